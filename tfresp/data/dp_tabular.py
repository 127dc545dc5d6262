"""Fit the tabular preprocessing under DP: every statistic is declared (public) or a DP release on the budget.

Two Gaussian releases, both registered on the run's :class:`~tfresp.privacy.budget.PrivacyBudget`:

1. ``preprocessing.histogram`` — one noisy histogram over (undeclared categorical column, value) keys and
   (undeclared numeric column, public power-of-two bin) keys; each row adds 1 to one key per column, so the
   L2 sensitivity is ``sqrt(columns)``. Category values and range bins whose noisy count exceeds τ are kept
   (:mod:`tfresp.data.dp_stats`); τ is set so that a value held by one row passes with probability
   ≤ ``delta_threshold`` (recorded in the spend's params as ``delta``).
2. ``preprocessing.numeric_moments`` — clipped sums, sums of squares and the row count (one Gaussian).

The preprocessing ε (``privacy.preprocessing_epsilon``) is the ε of both releases together at the run's δ;
it is split between them as ``1/μ² = 1/μ₁² + 1/μ₂²`` (Gaussian composition is exact), 3/4 to the histogram
(its threshold decides which categories the model sees), 1/4 to the moments.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import dp_accounting
import numpy as np
import pandas as pd

from tfresp.data import dp_stats
from tfresp.data.checks import str_value_counts
from tfresp.data.preprocess import TabularPreprocessor, column_kind, declared_categorical, declared_numeric
from tfresp.errors import DataError


HISTOGRAM_SHARE = 0.75
#: Share of the run's δ given to the threshold of data-dependent keys (a value held by one row passes).
THRESHOLD_DELTA_SHARE = 0.1


def preprocessing_epsilon(privacy_config) -> float:
    """``privacy.preprocessing_epsilon``, with ``auto`` = 5% of ``target_epsilon`` (0.1 without a target)."""
    value = getattr(privacy_config, "preprocessing_epsilon", "auto")
    if value == "auto":
        target = privacy_config.target_epsilon
        return 0.05 * float(target) if target is not None else 0.1
    return float(value)


def _values(s: pd.Series) -> np.ndarray:
    """The column's numbers without a float64 copy when its dtype is a numpy one (blocks convert themselves)."""
    v = s.to_numpy()
    return v if v.dtype.kind in "iuf" else s.astype("float64").to_numpy()


def fit_dp(df: pd.DataFrame, columns: List[str], categories: Optional[dict], ranges: Optional[dict], budget,
           epsilon: float, label: Optional[str] = None) -> Tuple[TabularPreprocessor, dict]:
    """A :class:`TabularPreprocessor` whose every number is declared or DP, and a summary for the report.

    ``label`` (optional): the label column joins the histogram unless declared in ``categories``; the
    summary then has ``classes`` (the label values that pass the threshold, or the declared list) and
    ``class_counts`` (their noisy counts, for class weights; ``None`` when declared).
    """
    categories, ranges = categories or {}, ranges or {}
    # one generator per column (and one for the moments): a column's noise does not depend on the others' keys
    seeds = np.random.SeedSequence(budget.secret_seed())
    names = list(columns) + [label, "<moments>"]
    rngs = {c: np.random.default_rng(s) for c, s in zip(names, seeds.spawn(len(names)))}
    kinds = {c: ("categorical" if c in categories else "numeric" if c in ranges else column_kind(df[c]))
             for c in columns}
    cat_cols = [c for c in columns if kinds[c] == "categorical" and c not in categories]
    if label is not None and label not in categories:
        cat_cols.append(label)
    num_cols = [c for c in columns if kinds[c] == "numeric" and c not in ranges]
    undeclared = [c for c in columns if c not in categories and c not in ranges]
    if undeclared:  # a column's type in the file is read from its rows: one non-numeric cell makes it categorical
        budget.declare_not_covered(
            "preprocessing.column_kinds",
            f"numeric or categorical for {undeclared[:10]}{' ...' if len(undeclared) > 10 else ''}: taken from each "
            "column's type as read from the training rows (one non-numeric value makes a column categorical); "
            "declare data.categories / data.numeric_ranges to make them public")
    spec: Dict[str, dict] = {}
    for c in columns:
        if c in categories:
            spec[c] = declared_categorical(c, categories[c])
            budget.declare_public(f"preprocessing.categories.{c}", "declared in data.categories")
        elif c in ranges:
            spec[c] = declared_numeric(c, ranges[c])
            budget.declare_public(f"preprocessing.numeric.{c}", "declared in data.numeric_ranges (clip + scale)")
    summary = {"epsilon": epsilon if (cat_cols or num_cols) else 0.0, "declared": sorted(set(categories) | set(ranges)),
               "dropped_columns": [], "kept_values": {}}
    if cat_cols or num_cols:
        delta_thr = THRESHOLD_DELTA_SHARE * budget.delta if cat_cols else 0.0
        # the threshold's δ comes out of the run's δ first (PrivacyBudget.accounting_delta): calibrate at the rest
        mu = dp_stats.gaussian_noise_multiplier(epsilon, budget.accounting_delta - delta_thr)
        mu_hist = mu / math.sqrt(HISTOGRAM_SHARE if num_cols else 1.0)
        sens = math.sqrt(len(cat_cols) + len(num_cols))
        sigma = mu_hist * sens
        tau = dp_stats.threshold(sigma, len(cat_cols), delta_thr) if cat_cols else 1.0 + 4.0 * sigma
        budget.spend("preprocessing.histogram", dp_accounting.GaussianDpEvent(mu_hist), mechanism="gaussian",
                     params={"noise_multiplier": mu_hist, "sensitivity": sens, "std": sigma, "threshold": tau,
                             "delta": delta_thr, "columns": cat_cols + num_cols},
                     covers=[f"preprocessing.categories.{c}" for c in cat_cols]
                     + [f"preprocessing.numeric_range.{c}" for c in num_cols])
        summary.update(noise_std=sigma, threshold=tau, threshold_delta=delta_thr)
        for c in cat_cols:
            counts = str_value_counts(df[c])
            vocab, noisy = dp_stats.kept_keys(counts, sigma, tau, rngs[c])
            if c == label:
                summary.update(classes=vocab, class_counts=noisy)
                continue
            spec[c] = {"name": c, "kind": "categorical", "vocab": vocab, "source": "dp"}
            summary["kept_values"][c] = len(vocab)
            if not vocab:
                summary["dropped_columns"].append(c)
        bounds = {}
        for c in num_cols:
            r = dp_stats.noisy_range(_values(df[c]), sigma, tau, rngs[c])
            if r is None:  # no bin has enough rows: the column is constant 0 for the model
                spec[c] = {"name": c, "kind": "numeric", "mean": 0.0, "std": 1.0, "clip": [0.0, 0.0], "source": "dp"}
                summary["dropped_columns"].append(c)
            else:
                bounds[c] = r
        if bounds:
            names = list(bounds)
            mu_mom = mu / math.sqrt(1.0 - HISTOGRAM_SHARE)
            sens_mom = math.sqrt(2 * len(names) + 1)
            budget.spend("preprocessing.numeric_moments", dp_accounting.GaussianDpEvent(mu_mom), mechanism="gaussian",
                         params={"noise_multiplier": mu_mom, "sensitivity": sens_mom, "std": mu_mom * sens_mom,
                                 "columns": names},
                         covers=[f"preprocessing.numeric.{c}" for c in names])
            moments = dp_stats.noisy_moments([_values(df[c]) for c in names],
                                             [bounds[c] for c in names], mu_mom * sens_mom, rngs["<moments>"])
            for c, (mean, std) in zip(names, moments):
                spec[c] = {"name": c, "kind": "numeric", "mean": mean, "std": std, "clip": list(bounds[c]),
                           "source": "dp"}
        if summary["dropped_columns"]:
            budget.declare_public("preprocessing.dropped_columns",
                                  f"{summary['dropped_columns']}: nothing passed the DP threshold (post-processing)")
    if label is not None and label in categories:
        summary.update(classes=[str(v) for v in categories[label]], class_counts=None)
        budget.declare_public("data.classes", f"declared in data.categories.{label}")
    elif label is not None:
        budget.declare_derived("data.classes", "label values kept by preprocessing.histogram")
    pre = TabularPreprocessor([spec[c] for c in columns])
    if pre.encoded_dim == 0:
        raise DataError("Invalid value for `privacy.preprocessing_epsilon`: no feature survives the DP "
                        f"preprocessing (threshold {summary.get('threshold', 0):.0f} rows). Received: "
                        f"preprocessing_epsilon={epsilon:g} on {len(df)} rows. Remedy: declare "
                        "data.categories / data.numeric_ranges, raise the budget or use more rows")
    return pre, summary
