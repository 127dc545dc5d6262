"""The always-on evaluation concern: metrics on the test split (never the training split).

Besides the metrics it records which class is positive (:mod:`tfresp.data.labels`) and two data
checks that :mod:`tfresp.evaluation.degenerate` reads: test rows that also occur in the training
split and duplicated training rows (counts of exact row hashes over features and label).
"""
import numpy as np
import pandas as pd

from tfresp.concerns import Concern, register
from tfresp.data.labels import describe
from tfresp.evaluation.metrics import classification_metrics


def _row_hashes(frame, columns):
    from tfresp.data.stream import row_hashes  # a block of rows at a time (memory flat in rows)

    return row_hashes(frame, columns)


def data_checks(ctx) -> dict:
    """``{train_rows, test_rows, test_rows_in_train, duplicate_train_rows}`` (tabular data; else ``{}``)."""
    data = ctx.data
    train, test = getattr(data.train, "frame", None), getattr(data.test, "frame", None)
    if not isinstance(train, pd.DataFrame) or not isinstance(test, pd.DataFrame) or data.kind != "tabular":
        return {}
    cols = list(data.feature_columns) + [ctx.config.data.label]
    h_train, h_test = _row_hashes(train, cols), _row_hashes(test, cols)
    out = {"train_rows": int(len(h_train)), "test_rows": int(len(h_test)),
           "test_rows_in_train": int(np.isin(h_test, h_train).sum()),
           "duplicate_train_rows": int(len(h_train) - len(np.unique(h_train))),
           "how": "exact row hashes over the feature columns and the label"}
    if ctx.budget is not None:
        ctx.budget.declare_not_covered("evaluation.data_checks", "counts of test rows found in the training split "
                                       "and of duplicated training rows (sanity checks, released without noise)")
    return out


@register
class Evaluation(Concern):
    config_key = "evaluation"
    example: dict = {}  # on in every classification run

    def enabled(self, config) -> bool:
        return config.task == "classification"

    def audit(self, ctx):
        data = ctx.data
        section = {"test": classification_metrics(data.test.y, ctx.predictions["test"], data.classes)}
        if "validation" in ctx.predictions:
            section["validation"] = classification_metrics(data.validation.y, ctx.predictions["validation"],
                                                           data.classes)
        section["split_used"] = "test"
        positive = describe(data.classes, getattr(ctx.config.data, "positive_class", None))
        if positive is not None:
            section["positive_class"] = positive
        checks = data_checks(ctx)
        if checks:
            section["data_checks"] = checks
        if data.kind == "text" and ctx.config.data.text:  # "is the big model worth it?"
            from tfresp.evaluation.baseline import text_baseline_section

            section["baseline"] = text_baseline_section(ctx, section["test"]["accuracy"])
        return section
