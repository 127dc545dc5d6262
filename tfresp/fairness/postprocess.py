"""Group-specific decision thresholds fitted on validation predictions (post-processing).

For a target rate ``L`` every group gets the threshold that is most accurate on validation data
among those whose rate (selection rate for demographic parity, TPR for equal opportunity, TPR
and FPR for equalized odds) lies within ``tolerance / 2`` of ``L``; the target with the best
overall validation accuracy wins. This is Hardt, Price & Srebro, "Equality of opportunity in
supervised learning" (NeurIPS 2016) restricted to *deterministic* thresholds, so served
decisions are reproducible (fairlearn's ``ThresholdOptimizer`` randomizes between two
thresholds per group to hit the constraint exactly). Groups unseen or smaller than
``min_group_size`` in validation keep the default threshold.

The fitted thresholds are saved to ``preprocessing/thresholds.json`` and applied inside the
exported SavedModel by :class:`GroupThresholds` (the group column becomes a serving input).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from tfresp.fairness.metrics import INTERSECTION_SEP

GRID = np.round(np.linspace(0.01, 0.99, 99), 4)


def _rates(y, prob, grid):
    d = prob[None, :] >= grid[:, None]  # [T, n]
    pos = y == 1
    npos, nneg = max(pos.sum(), 1), max((~pos).sum(), 1)
    sel = d.mean(axis=1)
    tpr = (d & pos).sum(axis=1) / npos
    fpr = (d & ~pos).sum(axis=1) / nneg
    correct = (d == pos).sum(axis=1)
    return sel, tpr, fpr, correct


def fit_group_thresholds(y: np.ndarray, prob: np.ndarray, groups: np.ndarray, constraint: str,
                         tolerance: float = 0.01, default: float = 0.5, min_group_size: int = 30,
                         grid: Sequence[float] = GRID) -> dict:
    """Per-group thresholds maximizing validation accuracy subject to a gap of at most ``tolerance``.

    Returns:
        ``{"thresholds": {group: t}, "default": t0, "validation": {accuracy, gap, target, feasible}}``.
    """
    y = np.asarray(y).astype(np.int64)
    prob = np.asarray(prob, np.float64)
    groups = np.asarray(groups).astype(str)
    grid = np.asarray(grid, np.float64)
    names, counts = np.unique(groups, return_counts=True)
    fitted = [g for g, n in zip(names, counts) if n >= min_group_size]
    small = [g for g in names if g not in fitted]
    stats = {g: _rates(y[groups == g], prob[groups == g], grid) for g in fitted}
    # rows of small groups are decided by the default threshold: their correct count is fixed
    fixed_correct = sum(int(((prob[groups == g] >= default) == (y[groups == g] == 1)).sum()) for g in small)
    half = tolerance / 2.0
    if constraint == "equalized_odds":
        lv = np.linspace(0, 1, 101)
        targets = [(a, b) for a in lv for b in lv if b <= a + 0.2]
    else:
        targets = [(a,) for a in np.linspace(0, 1, 201)]

    def rates_of(g):
        sel, tpr, fpr, _ = stats[g]
        if constraint == "demographic_parity":
            return [sel]
        if constraint == "equal_opportunity":
            return [tpr]
        return [tpr, fpr]

    best = None
    if fitted:
        rate_arrays = {g: np.stack(rates_of(g)) for g in fitted}  # [R, T]
        T = np.asarray(targets)  # [L, R]
        total_correct = np.full(len(T), fixed_correct, np.float64)
        choice = np.zeros((len(fitted), len(T)), np.int64)
        feasible = np.ones(len(T), bool)
        for j, g in enumerate(fitted):
            ok = np.all(np.abs(rate_arrays[g][None, :, :] - T[:, :, None]) <= half + 1e-12, axis=1)  # [L, Tgrid]
            corr = np.where(ok, stats[g][3][None, :], -1)
            choice[j] = corr.argmax(axis=1)
            feasible &= ok.any(axis=1)
            total_correct += corr.max(axis=1)
        if feasible.any():
            k = int(np.argmax(np.where(feasible, total_correct, -np.inf)))
            best = {g: float(grid[choice[j, k]]) for j, g in enumerate(fitted)}
            target = [float(v) for v in T[k]]
    if best is None:  # no target within tolerance: fall back to the smallest achievable gap
        best, target = _min_gap(stats, fitted, grid, rates_of), None
    thresholds = {**{g: float(default) for g in small}, **best}
    pred = np.array([prob[i] >= thresholds[groups[i]] for i in range(len(y))]) if len(y) else np.array([])
    return {"thresholds": thresholds, "default": float(default), "constraint": constraint,
            "tolerance": float(tolerance), "defaulted_groups": small,
            "validation": {"rows": int(len(y)), "accuracy": float((pred == (y == 1)).mean()) if len(y) else None,
                           "target_rate": target, "feasible": target is not None}}


def _min_gap(stats, fitted, grid, rates_of):
    # pick, per group, the threshold whose rates are closest to the across-group median at 0.5
    mid = int(np.argmin(np.abs(grid - 0.5)))
    ref = np.median(np.stack([np.stack(rates_of(g))[:, mid] for g in fitted]), axis=0)
    return {g: float(grid[int(np.argmin(np.abs(np.stack(rates_of(g)) - ref[:, None]).max(axis=0)))])
            for g in fitted}


def group_keys(groups_by_attr: Dict[str, np.ndarray], attributes: Sequence[str]) -> np.ndarray:
    arrays = [np.asarray(groups_by_attr[a]).astype(str).astype(object) for a in attributes]
    out = arrays[0]
    for a in arrays[1:]:
        out = out + INTERSECTION_SEP + a
    return out.astype(str)


def apply_thresholds(prob: np.ndarray, keys: np.ndarray, fitted: dict) -> np.ndarray:
    """Binary decisions with each row's group threshold (unknown groups: the default)."""
    t = np.array([fitted["thresholds"].get(k, fitted["default"]) for k in keys], np.float64)
    return (np.asarray(prob, np.float64) >= t).astype(np.int64)


def save(fitted: dict, attributes: List[str], directory: Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "thresholds.json"
    path.write_text(json.dumps({"attributes": list(attributes), "separator": INTERSECTION_SEP, **fitted},
                               indent=1))
    return path


class GroupThresholds(tf.Module):
    """Serving post-processing: ``class_id = P(class 1) >= threshold[group]`` in TF ops.

    ``__call__(raw_inputs, proba)`` reads the group column(s) named in ``attributes`` from the raw
    serving inputs; unknown groups use the default threshold.

    Example:
        >>> post = GroupThresholds(["sex"], {"Female": 0.42, "Male": 0.55}, 0.5)
        >>> post({"sex": tf.constant(["Female"])}, tf.constant([[0.5, 0.5]]))
    """

    def __init__(self, attributes: Sequence[str], thresholds: Dict[str, float], default: float,
                 positive_index: int = 1):
        super().__init__(name="group_thresholds")
        self.attributes = list(attributes)
        self.positive_index = int(positive_index)
        keys = tf.constant(list(thresholds.keys()) or ["<none>"], tf.string)
        vals = tf.constant(list(thresholds.values()) or [default], tf.float32)
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, vals),
                                               default_value=tf.constant(default, tf.float32))

    def __call__(self, inputs, proba):
        parts = [tf.strings.strip(tf.strings.as_string(inputs[a]) if inputs[a].dtype != tf.string else inputs[a])
                 for a in self.attributes]
        key = parts[0] if len(parts) == 1 else tf.strings.join(parts, separator=INTERSECTION_SEP)
        t = self.table.lookup(tf.reshape(key, [-1]))
        positive = tf.cast(proba[:, self.positive_index], tf.float32) >= t
        return tf.where(positive, tf.constant(self.positive_index, tf.int64),
                        tf.constant(1 - self.positive_index, tf.int64))
