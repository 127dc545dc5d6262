"""Adapter around fairlearn's :class:`~fairlearn.metrics.MetricFrame` (the metric engine).

Every point estimate tfresp reports for a group, and every gap between groups, comes from a
``MetricFrame`` built here; version quirks of fairlearn stay in this module.

Reference: Bird et al., "Fairlearn: A toolkit for assessing and improving fairness in AI",
Microsoft Tech Report MSR-TR-2020-32 (2020).
"""
from __future__ import annotations

import functools
from typing import Dict

import numpy as np
from fairlearn import metrics as flm
from sklearn import metrics as skm

#: tfresp metric name -> fairlearn / scikit-learn function over (y_true, y_pred).
LABEL_METRICS = {
    "selection_rate": flm.selection_rate,
    "true_positive_rate": flm.true_positive_rate,
    "false_positive_rate": flm.false_positive_rate,
    "false_negative_rate": flm.false_negative_rate,
    "true_negative_rate": flm.true_negative_rate,
    "accuracy": skm.accuracy_score,
    "precision": functools.partial(skm.precision_score, zero_division=0),
}
ECE_BINS = 10


def expected_calibration_error(y_true, y_prob, n_bins: int = ECE_BINS) -> float:
    """ECE with equal-width bins on P(class 1): ``sum_b |sum(y_b) - sum(p_b)| / n``.

    Guo et al., "On Calibration of Modern Neural Networks", ICML 2017 (binary form on the
    positive-class probability).
    """
    y_true = np.asarray(y_true, dtype=np.float64)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    if len(y_true) == 0:
        return float("nan")
    b = np.clip((y_prob * n_bins).astype(np.int64), 0, n_bins - 1)
    sy = np.bincount(b, weights=y_true, minlength=n_bins)
    sp = np.bincount(b, weights=y_prob, minlength=n_bins)
    return float(np.abs(sy - sp).sum() / len(y_true))


def label_frame(y_true, y_pred, groups, metrics=None) -> flm.MetricFrame:
    """MetricFrame of the thresholded-decision metrics (and ``count``) by group."""
    names = [m for m in (metrics or LABEL_METRICS) if m in LABEL_METRICS]
    fns = {m: LABEL_METRICS[m] for m in names}
    fns["count"] = flm.count
    return flm.MetricFrame(metrics=fns, y_true=np.asarray(y_true), y_pred=np.asarray(y_pred),
                           sensitive_features=np.asarray(groups))


def calibration_frame(y_true, y_prob, groups) -> flm.MetricFrame:
    """MetricFrame of the expected calibration error by group (``y_pred`` = P(class 1))."""
    return flm.MetricFrame(metrics={"ece": expected_calibration_error}, y_true=np.asarray(y_true),
                           y_pred=np.asarray(y_prob, dtype=np.float64), sensitive_features=np.asarray(groups))


def by_group(frame: flm.MetricFrame) -> Dict[str, Dict[str, float]]:
    table = frame.by_group
    return {str(g): {m: float(table.loc[g, m]) for m in table.columns} for g in table.index}


def gaps(frame: flm.MetricFrame, metric: str) -> Dict[str, float]:
    """``max - min`` and ``min / max`` of one metric across groups (fairlearn ``between_groups``)."""
    diff = frame.difference(method="between_groups")[metric]
    ratio = frame.ratio(method="between_groups")[metric]
    return {"difference": float(diff), "ratio": float(ratio)}
