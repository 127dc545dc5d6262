"""Degenerate-model and leaky-evaluation checks, from report.json alone (``tfresp report`` re-runs them).

A model that predicts (nearly) one class, or whose evaluation rows are its training rows, makes
every other number in the report look better than it is: accuracy equals the majority share,
group gaps shrink to zero because everyone gets the same decision. Each finding is
``{code, message, blocks_green}``; a finding with ``blocks_green`` keeps the scorecard from
being green and ``tfresp compare`` from calling the run better.

Thresholds (constants, documented in the messages):

* ``single_class``: one predicted class holds at least ``SINGLE_CLASS_SHARE`` of the test decisions;
* ``chance_balanced_accuracy``: balanced accuracy within ``CHANCE_MARGIN`` of chance (1 / classes);
* ``low_class_recall``: a class with at least ``MIN_CLASS_ROWS`` test rows has recall below
  ``MIN_RECALL``;
* ``loss_rose``: the final training loss is above the first epoch's;
* ``test_is_train``: the test file has the training file's SHA-256, or at least half of the test
  rows also occur in the training split (``test_overlap`` when some but fewer do);
* ``duplicated_rows``: more than ``DUPLICATE_SHARE`` of the training rows are exact duplicates.
"""
from __future__ import annotations

from typing import List

from tfresp.evaluation.served import served_metrics, served_path

SINGLE_CLASS_SHARE = 0.97
CHANCE_MARGIN = 0.05
MIN_RECALL = 0.10
MIN_CLASS_ROWS = 10
DUPLICATE_SHARE = 0.01


def _f(out, code, message, blocks_green=True):
    out.append({"code": code, "message": message, "blocks_green": blocks_green})


def findings(report: dict) -> List[dict]:
    """The degenerate-model and evaluation-leak findings of a report (empty when none)."""
    out: List[dict] = []
    ev = served_metrics(report)
    where = "served model" if served_path(report) != "evaluation.test" else "model"
    classes = [str(c) for c in ((report.get("data") or {}).get("classes") or [])]
    cm = ev.get("confusion_matrix")
    if isinstance(cm, list) and len(cm) >= 2 and all(isinstance(r, list) and len(r) == len(cm) for r in cm):
        n = sum(sum(r) for r in cm)
        predicted = [sum(r[j] for r in cm) for j in range(len(cm))]
        if n:
            j = max(range(len(cm)), key=lambda k: predicted[k])
            share = predicted[j] / n
            name = classes[j] if j < len(classes) else str(j)
            if share >= SINGLE_CLASS_SHARE:
                _f(out, "single_class", f"The {where} predicts class '{name}' for {predicted[j]} of {n} test rows "
                   f"({100 * share:.1f}% >= {100 * SINGLE_CLASS_SHARE:.0f}%): accuracy is close to a constant "
                   "predictor's and group gaps computed from its decisions are trivially small.")
        for i, row in enumerate(cm):
            rows = sum(row)
            if rows >= MIN_CLASS_ROWS and row[i] / rows < MIN_RECALL:
                name = classes[i] if i < len(classes) else str(i)
                _f(out, "low_class_recall", f"Recall of class '{name}' is {row[i] / rows:.3f} ({row[i]} of {rows} "
                   f"test rows) < {MIN_RECALL}: the {where} almost never recognizes it.")
    ba = ev.get("balanced_accuracy")
    k = len(cm) if isinstance(cm, list) and cm else len(classes)
    if isinstance(ba, (int, float)) and k >= 2 and ba <= 1.0 / k + CHANCE_MARGIN:
        if ba < 1.0 / k - CHANCE_MARGIN:
            _f(out, "chance_balanced_accuracy", f"Balanced accuracy of the {where} is {ba:.3f}, worse than chance "
               f"({1.0 / k:.3f}): its decisions are anti-correlated with the labels (swapped classes, a wrong "
               "positive class, or a shift between training and test data).")
        else:
            _f(out, "chance_balanced_accuracy", f"Balanced accuracy of the {where} is {ba:.3f}, within "
               f"{CHANCE_MARGIN} of chance ({1.0 / k:.3f}).")
    loss = (((report.get("training") or {}).get("history")) or {}).get("loss") or []
    if len(loss) >= 2 and all(isinstance(v, (int, float)) for v in loss) and loss[-1] > loss[0]:
        _f(out, "loss_rose", f"Training loss rose from {loss[0]:.4f} (first epoch) to {loss[-1]:.4f} (last): the "
           "optimization diverged or is too noisy (learning rate, DP noise).")
    source = ((report.get("data") or {}).get("source")) or {}
    train_files = set((source.get("files") or {}).values())
    test_files = set(((source.get("test_file") or {}).get("files") or {}).values())
    if train_files and test_files & train_files:
        _f(out, "test_is_train", "The test file has the same SHA-256 as the training file: test metrics are "
           "training metrics.")
    checks = ((report.get("evaluation") or {}).get("data_checks")) or {}
    overlap, test_rows = checks.get("test_rows_in_train"), checks.get("test_rows")
    if isinstance(overlap, int) and isinstance(test_rows, int) and test_rows and overlap:
        if overlap >= test_rows / 2:
            _f(out, "test_is_train", f"{overlap} of {test_rows} test rows also occur in the training split: test "
               "metrics are mostly training metrics.")
        else:
            _f(out, "test_overlap", f"{overlap} of {test_rows} test rows also occur in the training split "
               "(identical features and label).", blocks_green=False)
    dup, train_rows = checks.get("duplicate_train_rows"), checks.get("train_rows")
    if isinstance(dup, int) and isinstance(train_rows, int) and train_rows and dup > DUPLICATE_SHARE * train_rows:
        _f(out, "duplicated_rows", f"{dup} of {train_rows} training rows ({100 * dup / train_rows:.1f}%) are exact "
           "duplicates of another row; they weigh more in training and can inflate test metrics.",
           blocks_green=False)
    return out


def is_degenerate(report: dict) -> bool:
    """True when a finding blocks a green scorecard (single class, chance level, test == train, ...)."""
    return any(f["blocks_green"] for f in findings(report))
