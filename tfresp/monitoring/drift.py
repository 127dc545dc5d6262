"""Drift of one window against the reference profile.

Engine: scipy. Each column (and the served prediction) is tested with a two-sample chi-square test of homogeneity
on the reference's bins (``scipy.stats.chi2_contingency`` on the 2×K table of reference and window counts, so the
reference's own sampling error is accounted for); the p-values of one window are adjusted together with
Benjamini–Hochberg (``scipy.stats.false_discovery_control``). A column alarms when its adjusted p-value is below
``alpha`` AND its population stability index is at least ``min_psi`` — with thousands of rows a chi-square test
flags shifts too small to matter, so an effect-size floor is required (PSI 0.1 is the usual "moderate shift" line).
Categories the served model never saw in training (it encodes them as all zeros) are counted in every window and
raise their own alarm once they reach ``min_unseen_share`` of the window's rows (default 1%: a handful of rare
values is reported, not alarmed).

A column whose vocabulary is a DP release has a folded bucket (:mod:`tfresp.monitoring.profile`): its kept values
and the bucket are compared as the model saw them, values named as folded in the reference are never unseen, and
the remaining out-of-vocabulary values (those the reference held too rarely to name) alarm only when their share
exceeds the reference's by ``min_unseen_share`` and a one-sided two-proportion test (Fisher's exact test,
``scipy.stats.fisher_exact``) rejects equality at ``alpha``.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import pandas as pd
from scipy import stats

from tfresp.monitoring.profile import FOLDED, OTHER, bin_counts, category_counts, folded_counts
from tfresp.data.sources import as_category_strings

PSI_FLOOR = 1e-4


def chi2_pvalue(ref: List[int], cur: List[int]) -> float:
    """p-value of the two-sample chi-square homogeneity test (1.0 when fewer than two non-empty bins)."""
    table = np.array([ref, cur], dtype=np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)


def psi(ref: List[int], cur: List[int]) -> float:
    """Population stability index Σ (p_cur − p_ref)·ln(p_cur / p_ref), proportions floored at 1e-4."""
    r = np.asarray(ref, np.float64)
    c = np.asarray(cur, np.float64)
    if r.sum() == 0 or c.sum() == 0:
        return 0.0
    r = np.maximum(r / r.sum(), PSI_FLOOR)
    c = np.maximum(c / c.sum(), PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def window_counts(profile: dict, values: pd.Series, vocab: Optional[List[str]] = None) -> List[int]:
    if profile["kind"] == "numeric":
        return bin_counts(pd.to_numeric(values, errors="coerce").to_numpy(np.float64), profile["edges"])
    keep = [k for k in profile["counts"] if k not in (OTHER, FOLDED)]
    if profile.get("folded") is not None:
        return list(folded_counts(values, keep, vocab or []).values())
    return list(category_counts(values, keep).values())


def column_drift(profile: dict, values: pd.Series, vocab: Optional[List[str]] = None, ref_rows: int = 0) -> dict:
    ref = list(profile["counts"].values()) if profile["kind"] == "categorical" else profile["counts"]
    cur = window_counts(profile, values, vocab)
    out = {"kind": profile["kind"], "p_value": chi2_pvalue(ref, cur), "psi": psi(ref, cur),
           "reference_share": _shares(ref), "window_share": _shares(cur)}
    if vocab is not None:
        fold = profile.get("folded")
        known = set(vocab) | set((fold or {}).get("values") or [])
        s = as_category_strings(values)
        unseen = s[~s.isin(known)].value_counts()
        if len(unseen):
            out["unseen_categories"] = {str(k): int(v) for k, v in unseen.head(20).items()}
            out["unseen_rows"] = int(unseen.sum())
        if fold is not None:  # the reference's rate of values it held too rarely to name
            out["unseen_reference"] = {"rows": int(fold.get("unnamed_rows", 0)), "of": int(ref_rows or sum(ref))}
    return out


def unseen_alarm(t: dict, rows: int, alpha: float, min_unseen_share: float) -> bool:
    """Does a column's count of unseen values raise an alarm (see the module docstring)?"""
    k = t.get("unseen_rows") or 0
    if not k:
        return False
    base = t.get("unseen_reference")
    if base is None:
        return k >= min_unseen_share * max(rows, 1)
    r, n = base["rows"], max(base["of"], 1)
    if k / max(rows, 1) - r / n < min_unseen_share:
        return False
    p = stats.fisher_exact([[k, max(rows - k, 0)], [r, max(n - r, 0)]], alternative="greater").pvalue
    return bool(p < alpha)


def _shares(counts) -> List[float]:
    c = np.asarray(counts, np.float64)
    return (c / c.sum()).round(6).tolist() if c.sum() else [0.0] * len(c)


def window_drift(reference: dict, frame: pd.DataFrame, proba: np.ndarray, class_id: np.ndarray, *,
                 alpha: float = 0.01, min_psi: float = 0.1, min_unseen_share: float = 0.01) -> dict:
    """Per-column and prediction drift of one window, BH-adjusted, with the alarms it raises."""
    tests: Dict[str, dict] = {}
    vocab = reference.get("model_vocabulary", {})
    for col, prof in reference["features"].items():
        tests[col] = column_drift(prof, frame[col], vocab.get(col), int(reference.get("rows") or 0))
    pred = reference["prediction"]
    pred_tests = {}
    if "positive_probability" in pred and proba.shape[1] == 2:
        pp = pred["positive_probability"]
        cur = bin_counts(proba[:, 1], pp["edges"])
        pred_tests["positive_probability"] = {"kind": "numeric", "p_value": chi2_pvalue(pp["counts"], cur),
                                              "psi": psi(pp["counts"], cur), "window_share": _shares(cur),
                                              "reference_share": _shares(pp["counts"])}
    ref_cls = list(pred["class_counts"].values())
    cur_cls = np.bincount(class_id, minlength=len(ref_cls)).tolist()
    pred_tests["class"] = {"kind": "categorical", "p_value": chi2_pvalue(ref_cls, cur_cls), "psi": psi(ref_cls, cur_cls),
                           "window_share": _shares(cur_cls), "reference_share": _shares(ref_cls)}
    names = list(tests) + [f"prediction.{k}" for k in pred_tests]
    allt = list(tests.values()) + list(pred_tests.values())
    pvals = np.array([t["p_value"] for t in allt], np.float64)
    adjusted = stats.false_discovery_control(pvals, method="bh") if len(pvals) else pvals
    alarms = []
    for name, t, adj in zip(names, allt, adjusted):
        t["p_adjusted"] = float(adj)
        t["drift"] = bool(adj < alpha and t["psi"] >= min_psi)
        if t["drift"]:
            alarms.append({"type": "drift", "column": name, "psi": t["psi"], "p_adjusted": float(adj)})
        if unseen_alarm(t, len(frame), alpha, min_unseen_share):
            alarms.append({"type": "unseen_category", "column": name, "rows": t["unseen_rows"],
                           "values": list(t["unseen_categories"])[:5]})
    drifted = [n for n, t in zip(names, allt) if t["drift"] and not n.startswith("prediction.")]
    return {
        "features": tests,
        "prediction": pred_tests,
        "overall": {"drifted_features": drifted, "share_drifted": len(drifted) / max(len(tests), 1),
                    "max_psi": max([t["psi"] for t in tests.values()] or [0.0]),
                    "prediction_drift": any(t["drift"] for t in pred_tests.values())},
        "alarms": alarms,
    }
