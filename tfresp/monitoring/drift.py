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
``scipy.stats.fisher_exact``), adjusted with the window's drift tests (one Benjamini–Hochberg family), rejects
equality at ``alpha``.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import pandas as pd
from scipy import special, stats

from tfresp.monitoring.profile import FOLDED, OTHER, bin_counts
from tfresp.data.sources import as_category_strings

PSI_FLOOR = 1e-4


def chi2_pvalue(ref: List[int], cur: List[int]) -> float:
    """p-value of the two-sample chi-square homogeneity test (1.0 when fewer than two non-empty bins).

    The statistic of ``scipy.stats.chi2_contingency(table, correction=False)`` on the 2×K table, computed
    directly (the tests check both agree): the monitor runs it for every column of every window."""
    table = np.array([ref, cur], dtype=np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    stat = float(((table - expected) ** 2 / expected).sum())
    return float(special.chdtrc(table.shape[1] - 1, stat))  # = scipy.stats.chi2.sf, without its wrapper


def psi(ref: List[int], cur: List[int]) -> float:
    """Population stability index Σ (p_cur − p_ref)·ln(p_cur / p_ref), proportions floored at 1e-4."""
    r = np.asarray(ref, np.float64)
    c = np.asarray(cur, np.float64)
    if r.sum() == 0 or c.sum() == 0:
        return 0.0
    r = np.maximum(r / r.sum(), PSI_FLOOR)
    c = np.maximum(c / c.sum(), PSI_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


class ColumnCodes:
    """One column of a batch encoded once against its reference profile: per row, the profile bin; for a column
    with a model vocabulary, which distinct values are unseen. Each window then only counts a slice."""

    def __init__(self, profile: dict, values: pd.Series, vocab: Optional[List[str]] = None, ref_rows: int = 0):
        self.kind = profile["kind"]
        self.fold = profile.get("folded")
        self.vocab = vocab
        self.ref_rows = ref_rows
        self.unseen_idx = None
        if self.kind == "numeric":
            self.ref = list(profile["counts"])
            self.codes = np.searchsorted(np.asarray(profile["edges"], np.float64),
                                         pd.to_numeric(values, errors="coerce").to_numpy(np.float64), side="left")
            self.k = len(profile["edges"]) + 1
            return
        keys = list(profile["counts"])
        self.ref = list(profile["counts"].values())
        self.k = len(keys)
        index = {k: i for i, k in enumerate(keys) if k not in (OTHER, FOLDED)}
        other = keys.index(OTHER) if OTHER in keys else len(keys) - 1
        folded = keys.index(FOLDED) if FOLDED in keys else other
        inv, uniq = pd.factorize(as_category_strings(values), sort=False)
        uniq = [str(u) for u in uniq]
        vset = set(vocab or [])
        binmap = np.array([index[u] if u in index else (folded if self.fold is not None and u not in vset
                                                         else other) for u in uniq] + [other], np.int64)
        self.codes = binmap[inv]
        self.inv, self.uniq = inv, uniq
        if vocab is not None:
            known = vset | set((self.fold or {}).get("values") or [])
            unseen = np.array([u not in known for u in uniq], bool)
            if unseen.any():
                self.unseen_idx = np.flatnonzero(unseen)

    def drift(self, sl: slice = slice(None)) -> dict:
        cur = np.bincount(self.codes[sl], minlength=self.k)[:self.k].tolist()
        out = {"kind": self.kind, "p_value": chi2_pvalue(self.ref, cur), "psi": psi(self.ref, cur),
               "reference_share": _shares(self.ref), "window_share": _shares(cur)}
        if self.vocab is None or self.kind == "numeric":
            return out
        if self.unseen_idx is not None:
            per = np.bincount(self.inv[sl], minlength=len(self.uniq))[self.unseen_idx]
            order = np.argsort(-per, kind="stable")
            seen = [(self.uniq[self.unseen_idx[i]], int(per[i])) for i in order if per[i] > 0]
            if seen:
                out["unseen_categories"] = dict(seen[:20])
                out["unseen_rows"] = int(sum(n for _, n in seen))
        if self.fold is not None:  # the reference's rate of values it held too rarely to name
            out["unseen_reference"] = {"rows": int(self.fold.get("unnamed_rows", 0)),
                                       "of": int(self.ref_rows or sum(self.ref))}
        return out


def encode_columns(reference: dict, frame: pd.DataFrame) -> Dict[str, ColumnCodes]:
    """Every reference column of ``frame`` encoded once (:class:`ColumnCodes`)."""
    vocab = reference.get("model_vocabulary", {})
    rows = int(reference.get("rows") or 0)
    return {col: ColumnCodes(prof, frame[col], vocab.get(col), rows) for col, prof in reference["features"].items()}


def window_counts(profile: dict, values: pd.Series, vocab: Optional[List[str]] = None) -> List[int]:
    c = ColumnCodes(profile, values, vocab)
    return np.bincount(c.codes, minlength=c.k)[:c.k].tolist()


def column_drift(profile: dict, values: pd.Series, vocab: Optional[List[str]] = None, ref_rows: int = 0) -> dict:
    return ColumnCodes(profile, values, vocab, ref_rows).drift()


def unseen_pvalue(t: dict, rows: int) -> Optional[float]:
    """One-sided p-value that a DP column's unseen share exceeds the reference's (None without a folded bucket)."""
    base = t.get("unseen_reference")
    if base is None:
        return None
    k = t.get("unseen_rows") or 0
    r, n = base["rows"], max(base["of"], 1)
    return float(stats.fisher_exact([[k, max(rows - k, 0)], [r, max(n - r, 0)]], alternative="greater").pvalue)


def unseen_alarm(t: dict, rows: int, alpha: float, min_unseen_share: float) -> bool:
    """Does a column's count of unseen values raise an alarm (see the module docstring)? A DP column needs its
    BH-adjusted p-value (``unseen_p_adjusted``, set by :func:`coded_window_drift`) below ``alpha``."""
    k = t.get("unseen_rows") or 0
    if not k:
        return False
    base = t.get("unseen_reference")
    if base is None:
        return k >= min_unseen_share * max(rows, 1)
    if k / max(rows, 1) - base["rows"] / max(base["of"], 1) < min_unseen_share:
        return False
    return bool(t.get("unseen_p_adjusted", 1.0) < alpha)


def _shares(counts) -> List[float]:
    c = np.asarray(counts, np.float64)
    return (c / c.sum()).round(6).tolist() if c.sum() else [0.0] * len(c)


def window_drift(reference: dict, frame: pd.DataFrame, proba: np.ndarray, class_id: np.ndarray, *,
                 alpha: float = 0.01, min_psi: float = 0.1, min_unseen_share: float = 0.01) -> dict:
    """Per-column and prediction drift of one window, BH-adjusted, with the alarms it raises."""
    return coded_window_drift(reference, encode_columns(reference, frame), slice(None), len(frame), proba, class_id,
                              alpha=alpha, min_psi=min_psi, min_unseen_share=min_unseen_share)


def coded_window_drift(reference: dict, coded: Dict[str, ColumnCodes], sl: slice, rows: int, proba: np.ndarray,
                       class_id: np.ndarray, *, alpha: float = 0.01, min_psi: float = 0.1,
                       min_unseen_share: float = 0.01) -> dict:
    """:func:`window_drift` on the rows ``sl`` of a batch encoded once (``proba`` / ``class_id``: those rows)."""
    tests: Dict[str, dict] = {col: c.drift(sl) for col, c in coded.items()}
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
    # the unseen-share tests of DP columns join the window's family of tests (one BH adjustment)
    extra = [(t, unseen_pvalue(t, rows)) for t in tests.values() if t.get("unseen_rows")]
    extra = [(t, p) for t, p in extra if p is not None]
    pvals = np.array([t["p_value"] for t in allt] + [p for _, p in extra], np.float64)
    adjusted = stats.false_discovery_control(pvals, method="bh") if len(pvals) else pvals
    for (t, p), adj in zip(extra, adjusted[len(allt):]):
        t["unseen_p_value"], t["unseen_p_adjusted"] = p, float(adj)
    adjusted = adjusted[:len(allt)]
    alarms = []
    for name, t, adj in zip(names, allt, adjusted):
        t["p_adjusted"] = float(adj)
        t["drift"] = bool(adj < alpha and t["psi"] >= min_psi)
        if t["drift"]:
            alarms.append({"type": "drift", "column": name, "psi": t["psi"], "p_adjusted": float(adj)})
        if unseen_alarm(t, rows, alpha, min_unseen_share):
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
