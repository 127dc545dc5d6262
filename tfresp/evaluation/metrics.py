"""Classification metrics on held-out data (scikit-learn is the metric engine)."""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, classes, threshold: float = 0.5,
                           y_pred: np.ndarray | None = None) -> dict:
    """Accuracy, precision, recall, F1, ROC-AUC and a per-class report.

    Binary tasks use the positive class (index 1) with ``threshold``; multi-class tasks use
    macro averages and one-vs-rest ROC-AUC. ``y_pred`` overrides the thresholded predictions
    (e.g. after group-specific thresholds).
    """
    n_classes = proba.shape[1]
    if y_pred is None:
        y_pred = (proba[:, 1] >= threshold).astype(int) if n_classes == 2 else proba.argmax(axis=1)
    avg = "binary" if n_classes == 2 else "macro"
    out = {
        "rows": int(len(y_true)),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(skm.precision_score(y_true, y_pred, average=avg, zero_division=0)),
        "recall": float(skm.recall_score(y_true, y_pred, average=avg, zero_division=0)),
        "f1": float(skm.f1_score(y_true, y_pred, average=avg, zero_division=0)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y_true, y_pred)),
    }
    try:
        if n_classes == 2:
            out["roc_auc"] = float(skm.roc_auc_score(y_true, proba[:, 1]))
        else:
            out["roc_auc"] = float(skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro",
                                                     labels=list(range(n_classes))))
    except ValueError:  # a class absent from y_true
        out["roc_auc"] = None
    out["log_loss"] = float(skm.log_loss(y_true, np.clip(proba, 1e-7, 1.0), labels=list(range(n_classes))))
    rep = skm.classification_report(y_true, y_pred, labels=list(range(n_classes)), target_names=[str(c) for c in classes],
                                    output_dict=True, zero_division=0)
    out["per_class"] = {str(c): {k: float(v) for k, v in rep[str(c)].items()} for c in classes}
    out["confusion_matrix"] = skm.confusion_matrix(y_true, y_pred, labels=list(range(n_classes))).tolist()
    if n_classes == 2:
        out["threshold"] = float(threshold)
    return out


def roc_auc_interval(y_true: np.ndarray, proba: np.ndarray, delta: float) -> tuple[float, float] | None:
    """The range ROC-AUC can take over every score vector within ``delta`` of ``proba`` (elementwise).

    ROC-AUC counts ordered (positive, negative) pairs, so a float difference far below any tolerance on the
    probabilities (the SavedModel and the in-memory Keras model differ by ~1e-7) can swap two near-tied scores and
    move the AUC by 1/(P·N). A pair whose scores differ by more than ``2·delta`` keeps its order under any such
    perturbation; a closer pair may count 0, ½ or 1. Lower bound: only the sure wins; upper bound: sure wins plus
    every close pair. Multi-class: the one-vs-rest macro average of the per-class bounds. None when ROC-AUC is
    undefined (a class absent from ``y_true``).
    """
    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=np.float64)
    columns = [1] if proba.shape[1] == 2 else range(proba.shape[1])
    los, his = [], []
    for k in columns:
        pos, neg = np.sort(proba[y_true == k, k]), np.sort(proba[y_true != k, k])
        if not len(pos) or not len(neg):
            return None
        pairs = float(len(pos)) * len(neg)
        sure = np.searchsorted(neg, pos - 2 * delta, side="left").sum()  # negatives surely below each positive
        close = np.searchsorted(neg, pos + 2 * delta, side="right").sum() - sure
        los.append(sure / pairs)
        his.append((sure + close) / pairs)
    return float(np.mean(los)), float(np.mean(his))
