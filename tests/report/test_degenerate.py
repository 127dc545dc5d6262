"""Degenerate-model and leaky-evaluation warnings: at the top of the report, never a green scorecard, and
``tfresp compare`` does not call a degenerate run better. Plus the positive class rules."""
import pandas as pd
import pytest

from tests.report.conftest import synthetic_report
from tfresp.data.labels import describe, order_classes
from tfresp.errors import DataError
from tfresp.evaluation.degenerate import findings, is_degenerate
from tfresp.report.compare import compare_reports
from tfresp.report.derive import derive
from tfresp.report.html import _summary_cards
from tfresp.report.markdown import render_markdown

# the loans case of the issue: positive class predicted for 10 of 600 rows
SINGLE = {"rows": 600, "accuracy": 0.87, "balanced_accuracy": 0.518, "f1": 0.07, "precision": 0.8,
          "recall": 0.0375, "roc_auc": 0.7, "confusion_matrix": [[513, 7], [77, 3]]}


def _codes(report):
    return {f["code"] for f in findings(report)}


def test_healthy_report_has_no_findings_and_can_be_green():
    r = derive(synthetic_report())
    assert findings(r) == [] and not is_degenerate(r)
    assert r["scorecard"]["blocked_by"] == []


def test_single_class_model_is_flagged_first_and_never_green():
    r = derive(synthetic_report(evaluation__test=SINGLE, fairness__sex__equalized_odds_difference=0.01,
                                fairness__sex__demographic_parity_difference=0.005))
    assert {"single_class", "low_class_recall", "chance_balanced_accuracy"} <= _codes(r)
    assert r["warnings"][0]["code"].startswith("degenerate_")  # first: at the top of the report
    assert r["scorecard"]["blocked_by"] and r["scorecard"]["status"].startswith("not assessable")
    cards = {label: tone for label, _, _, tone in _summary_cards(r)}
    assert cards["Model"] == "bad" and cards["Bias score B"] == "bad" and cards["Max EO difference"] == "bad"
    card = render_markdown(r)
    body = card.split("---", 2)[2]
    assert body.index("**Warning:** The model predicts class") < body.index("## Model details")


def test_loss_rose_and_test_equals_train():
    r = synthetic_report(training__history={"loss": [0.5, 0.6, 0.9]})
    assert _codes(r) == {"loss_rose"}
    same = synthetic_report(data__source={"name": "x.csv", "files": {"x.csv": "ab" * 32},
                                          "test_file": {"files": {"x.csv": "ab" * 32}}})
    assert "test_is_train" in _codes(same) and is_degenerate(same)
    overlap = synthetic_report(evaluation__data_checks={"train_rows": 1000, "test_rows": 400,
                                                        "test_rows_in_train": 390, "duplicate_train_rows": 200})
    assert {"test_is_train", "duplicated_rows"} <= _codes(overlap)
    few = synthetic_report(evaluation__data_checks={"train_rows": 1000, "test_rows": 400,
                                                    "test_rows_in_train": 3, "duplicate_train_rows": 5})
    assert _codes(few) == {"test_overlap"} and not is_degenerate(few)


def test_served_metrics_are_the_ones_checked():
    # raw model fine, the served post-processing approves everyone: flagged on what is served
    served = dict(SINGLE, confusion_matrix=[[0, 520], [0, 80]], balanced_accuracy=0.5)
    r = synthetic_report(evaluation__served=served)
    assert "single_class" in _codes(r) and "served model" in findings(r)[0]["message"]


def test_compare_does_not_call_a_degenerate_run_better():
    good = synthetic_report()
    bad = synthetic_report(evaluation__test=SINGLE, fairness__sex__equalized_odds_difference=0.01)
    rows = {r["metric"]: r for r in compare_reports(good, bad)}
    verdict = rows["fairness.sex.equalized_odds_difference"]["verdict"]
    assert verdict != "better" and "degenerate" in verdict
    # the healthy side may still be better
    back = {r["metric"]: r for r in compare_reports(bad, good)}
    assert back["evaluation.test.balanced_accuracy"]["verdict"] == "better"


@pytest.mark.slow
def test_end_to_end_test_file_equal_to_train_file_is_flagged(tmp_path):
    import numpy as np

    import tfresp

    rng = np.random.default_rng(0)
    n = 300
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n), "g": rng.choice(["a", "b"], n)})
    df["y"] = np.where(df.x1 + 0.3 * rng.normal(size=n) > 0, "yes", "no")
    path = tmp_path / "rows.csv"
    df.to_csv(path, index=False)
    cfg = {"name": "leak", "data": {"source": str(path), "label": "y", "sensitive": ["g"],
                                    "split": {"test": str(path), "validation": 0.0}},
           "model": {"kind": "mlp", "hidden": [4]}, "train": {"epochs": 1, "batch_size": 64},
           "export": {"saved_model": False}, "report": {"html": False}}
    run = tfresp.fit(cfg, out=str(tmp_path / "run"), quiet=True)
    codes = [w["code"] for w in run.report["warnings"]]
    assert "degenerate_test_is_train" in codes
    assert run.report["evaluation"]["data_checks"]["test_rows_in_train"] == n
    assert run.report["evaluation"]["positive_class"] == {"positive_class": "yes", "chosen_by":
                                                          "conventional labels ['no', 'yes']", "ambiguous": False}
    assert run.report["scorecard"]["blocked_by"]


def test_positive_class_rules():
    assert order_classes(["<=50K", ">50K"], None) == ["<=50K", ">50K"]
    assert order_classes(["bad", "good"], "bad") == ["good", "bad"]
    assert order_classes(["No", "Yes"], None) == ["No", "Yes"]
    assert describe(["bad", "good"], None)["ambiguous"] is True
    assert describe(["0", "1"], None)["ambiguous"] is False
    assert describe(["good", "bad"], "bad")["chosen_by"] == "data.positive_class"
    with pytest.raises(DataError, match="data.positive_class"):
        order_classes(["bad", "good"], "excellent")
    r = derive(synthetic_report(evaluation__positive_class=describe(["bad", "good"], None)))
    assert r["warnings"][0]["code"] == "ambiguous_positive_class"
    head = render_markdown(r).split("## Model details")[0]
    assert "Positive class: **good**" in head and "ambiguous" in head


def test_data_positive_class_orders_the_classes():
    from tests.conftest import tiny_adult
    from tfresp.config import load_config
    from tfresp.data.dataset import prepare

    data = prepare(load_config(tiny_adult(data={"positive_class": "<=50K", "max_rows": 500})))
    assert data.classes == [">50K", "<=50K"]
    labels = data.test.frame["income"].astype(str).to_numpy()
    assert ((data.test.y == 1) == (labels == "<=50K")).all()
