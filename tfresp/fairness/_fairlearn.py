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
ECE_BINS = 10  # tfresp.fairness.metrics.ECE_BINS is the same number (tests/fairness/test_metrics.py checks it)


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


def _weighted_count(y_true, y_pred, sample_weight):
    return float(np.sum(sample_weight))


def _weighted_ece(y_true, y_pred, sample_weight, bins, n_bins: int = ECE_BINS) -> float:
    """:func:`expected_calibration_error` of rows given as weighted cells: ``y_pred`` is the mean P(class 1) of
    the ``sample_weight`` rows of a cell, ``bins`` their (common) calibration bin."""
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.sum() == 0:
        return float("nan")
    b = np.asarray(bins, dtype=np.int64)
    sy = np.bincount(b, weights=w * np.asarray(y_true, dtype=np.float64), minlength=n_bins)
    sp = np.bincount(b, weights=w * np.asarray(y_pred, dtype=np.float64), minlength=n_bins)
    return float(np.abs(sy - sp).sum() / w.sum())


def label_frame(y_true, y_pred, groups, metrics=None, sample_weight=None) -> flm.MetricFrame:
    """MetricFrame of the thresholded-decision metrics (and ``count``) by group.

    ``sample_weight``: rows given as weighted cells (a row of weight ``k`` stands for ``k`` identical rows); every
    metric here is a ratio of weighted confusion counts, so the numbers equal those of the expanded rows.
    """
    names = [m for m in (metrics or LABEL_METRICS) if m in LABEL_METRICS]
    fns = {m: LABEL_METRICS[m] for m in names}
    if sample_weight is None:
        fns["count"] = flm.count
        params = None
    else:
        fns["count"] = _weighted_count
        w = np.asarray(sample_weight, dtype=np.float64)
        params = {m: {"sample_weight": w} for m in fns}
    return flm.MetricFrame(metrics=fns, y_true=np.asarray(y_true), y_pred=np.asarray(y_pred),
                           sensitive_features=np.asarray(groups), sample_params=params)


def calibration_frame(y_true, y_prob, groups, sample_weight=None, bins=None) -> flm.MetricFrame:
    """MetricFrame of the expected calibration error by group (``y_pred`` = P(class 1)).

    With ``sample_weight`` and ``bins``: rows given as weighted cells of one label and one calibration bin,
    ``y_prob`` the mean probability of the cell's rows (:func:`_weighted_ece`).
    """
    if sample_weight is None:
        return flm.MetricFrame(metrics={"ece": expected_calibration_error}, y_true=np.asarray(y_true),
                               y_pred=np.asarray(y_prob, dtype=np.float64), sensitive_features=np.asarray(groups))
    params = {"ece": {"sample_weight": np.asarray(sample_weight, np.float64), "bins": np.asarray(bins, np.int64)}}
    return flm.MetricFrame(metrics={"ece": _weighted_ece}, y_true=np.asarray(y_true),
                           y_pred=np.asarray(y_prob, dtype=np.float64), sensitive_features=np.asarray(groups),
                           sample_params=params)


def by_group(frame: flm.MetricFrame) -> Dict[str, Dict[str, float]]:
    table = frame.by_group
    return {str(g): {m: float(table.loc[g, m]) for m in table.columns} for g in table.index}


def gaps(frame: flm.MetricFrame, metric: str) -> Dict[str, float]:
    """``max - min`` and ``min / max`` of one metric across groups (fairlearn ``between_groups``)."""
    diff = frame.difference(method="between_groups")[metric]
    ratio = frame.ratio(method="between_groups")[metric]
    return {"difference": float(diff), "ratio": float(ratio)}
