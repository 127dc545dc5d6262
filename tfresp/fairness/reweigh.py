"""Kamiran-Calders reweighing: sample weights that make the label independent of the group.

``w(g, y) = P(g) P(y) / P(g, y)`` estimated on the training split, so that in the weighted data
every group has the overall base rate (Kamiran & Calders, "Data preprocessing techniques for
classification without discrimination", KAIS 33(1), 2012). Weights are normalized to mean 1.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def group_label_counts(groups: np.ndarray, y: np.ndarray, n_groups: int, n_classes: int) -> np.ndarray:
    """``[G, C]`` histogram of (group, label) pairs."""
    return np.bincount(groups * n_classes + y, minlength=n_groups * n_classes).reshape(n_groups, n_classes)


def laplace_counts(counts: np.ndarray, epsilon: float, seed: int) -> np.ndarray:
    """The histogram released with the Laplace mechanism: noise of scale 1/ε per cell.

    Sensitivity 1 under add/remove-one (Dwork, McSherry, Nissim & Smith, "Calibrating noise to sensitivity",
    TCC 2006). ``seed`` must be secret (``PrivacyBudget.secret_seed()``): whoever knows it can subtract the
    noise. Noisy counts are floored at 1 (post-processing) so every weight stays finite and positive.
    """
    rng = np.random.default_rng(seed)
    noisy = counts + rng.laplace(0.0, 1.0 / epsilon, size=counts.shape)
    return np.maximum(noisy, 1.0)


def kamiran_calders_weights(groups: np.ndarray, y: np.ndarray, n_groups: int, n_classes: int,
                            counts: Optional[np.ndarray] = None) -> np.ndarray:
    """Per-row weights ``P(g)P(y)/P(g,y)`` (mean 1 over the rows the counts describe).

    With privatized ``counts`` every probability, the normalisation included, comes from the noisy
    counts only: ``Σ_gy ñ_gy·w_gy / ñ = Σ_gy P(g)P(y) = 1``, so no statistic of the true rows (their exact
    number, the exact mean weight) enters the weights.

    Args:
        groups: int group id per training row.
        y: int label per training row.
        counts: optional (e.g. privatized) ``[G, C]`` histogram to estimate the probabilities from.

    Example:
        >>> w = kamiran_calders_weights(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2, 2)
    """
    groups = np.asarray(groups, np.int64)
    y = np.asarray(y, np.int64)
    private = counts is not None
    if counts is None:
        counts = group_label_counts(groups, y, n_groups, n_classes)
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    p_g = counts.sum(axis=1, keepdims=True) / total
    p_y = counts.sum(axis=0, keepdims=True) / total
    p_gy = counts / total
    table = np.where(p_gy > 0, p_g * p_y / np.where(p_gy > 0, p_gy, 1.0), 0.0)
    w = table[groups, y]
    if private:  # already mean 1 under the noisy counts; dividing by the true row mean would leak it
        return w.astype(np.float32), table
    return (w / w.mean()).astype(np.float32), table
