"""The fairness audit as a function of (labels, predictions, groups): one implementation for the concern's report
section and :func:`tfresp.audits.fairness` (any Keras model).

For every attribute and the intersection of the first two: per-group metrics with bias-corrected bootstrap CIs,
the gaps, disparate impact and a threshold sweep (:mod:`tfresp.fairness.metrics`, fairlearn's ``MetricFrame`` as
the engine), then the worst gap over them (:func:`headline`) and normalized gaps (:func:`score_hooks`).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from tfresp.data.labels_compact import str_labels
from tfresp.fairness import metrics as fm

ENGINE = "fairlearn.metrics.MetricFrame (point estimates); vectorized bias-corrected bootstrap (CIs)"


def positive_view(labels, proba, pos: int, decision_threshold: float):
    """``(y, prob, decisions)``: labels as 1 = positive class, P(positive), and the model's positive decisions
    (binary: P(positive) >= threshold; multi-class: argmax is the positive class, one-vs-rest)."""
    proba = np.asarray(proba)
    y = (np.asarray(labels) == pos).astype(np.int64)
    prob = proba[:, pos].astype(np.float64)
    if proba.shape[1] == 2:
        raw = (prob >= decision_threshold).astype(np.int64)
    else:
        raw = (proba.argmax(axis=1) == pos).astype(np.int64)
    return y, prob, raw


def header(positive_class: str, decision_threshold: float, constraint: str, attributes: List[str],
           split: str = "test") -> dict:
    """The first keys of a fairness section (what is audited, how)."""
    return {"positive_class": positive_class, "decision_threshold": decision_threshold,
            "constraint": constraint, "attributes": attributes, "engine": ENGINE, "split": split, "warnings": []}


def group_reports(y, decisions, prob, groups: Mapping[str, np.ndarray], attributes: Sequence[str], *,
                  intersectional: bool = True, privileged: Optional[Dict[str, str]] = None,
                  thresholds: Optional[Sequence[float]] = None, metrics=None, min_group_size: int = 30,
                  bootstrap: int = 200, confidence: float = 0.95, seed: int = 0) -> Dict[str, dict]:
    """``{attribute: report}`` (plus ``"<a>_x_<b>"`` for the intersection of the first two attributes).

    Args:
        y: binary labels (1 = positive class); decisions: binary decisions; prob: P(positive class).
        groups: ``{attribute: group label per row}``.
        thresholds: decision thresholds of the sweep (default 0.1 ... 0.9).
        The other arguments are those of :func:`tfresp.fairness.metrics.group_report`.
    """
    thresholds = list(thresholds or fm.DEFAULT_THRESHOLDS)
    kw = dict(metrics=metrics, min_group_size=min_group_size, bootstrap=bootstrap, confidence=confidence, seed=seed)
    reports = {}
    for attr in attributes:
        g = str_labels(groups[attr])
        rep = fm.group_report(y, decisions, prob, g, privileged=(privileged or {}).get(attr), **kw)
        rep["threshold_sweep"] = fm.threshold_sweep(y, prob, g, thresholds, min_group_size)
        reports[attr] = rep
    if intersectional and len(attributes) >= 2:
        attrs = list(attributes[:2])
        g = fm.intersect({a: groups[a] for a in attrs}, attrs)
        rep = fm.group_report(y, decisions, prob, g, **kw)
        rep["attributes"] = attrs
        rep["threshold_sweep"] = fm.threshold_sweep(y, prob, g, thresholds, min_group_size)
        reports[fm.INTERSECTION_SEP.join(attrs)] = rep
    return reports


def section_of(reports: Dict[str, dict], attributes: Sequence[str]) -> dict:
    """The per-attribute entries, ``intersectional``, the headline (worst gaps) and ``score_hooks``."""
    out = {a: reports[a] for a in attributes}
    rest = {k: v for k, v in reports.items() if k not in out}
    if rest:
        out["intersectional"] = rest
    out.update(headline(reports))
    out["score_hooks"] = score_hooks(reports)
    return out


HOOKS = {"demographic_parity": "demographic_parity_difference", "equalized_odds": "equalized_odds_difference",
         "equal_opportunity": "equal_opportunity_difference", "calibration": "ece_difference"}


def headline(reports: Dict[str, dict]) -> dict:
    """Worst gap over single attributes *and* reported intersections, the attribute it comes from and the
    groups left out of every number (suppressed: fewer than ``min_group_size`` test rows)."""
    out = {}
    for gap in ("demographic_parity_difference", "equalized_odds_difference", "equal_opportunity_difference"):
        vals = {a: r[gap] for a, r in reports.items() if r.get(gap) is not None}
        if vals:
            worst = max(vals, key=vals.get)
            out[gap] = vals[worst]
            out[f"{gap}_ci"] = reports[worst].get(f"{gap}_ci")
            out[f"{gap}_attribute"] = worst
    out["headline_over"] = sorted(reports)
    out["suppressed_groups"] = {a: sorted(r.get("suppressed") or {}) for a, r in reports.items()
                                if r.get("suppressed")}
    return out


def score_hooks(reports: Dict[str, dict]) -> dict:
    """Normalized gaps in [0, 1] (0 = parity) for the ethics/bias scorecard, per attribute and worst."""
    hooks = {}
    for attr, rep in reports.items():
        h = {}
        for name, key in HOOKS.items():
            v = rep.get(key)
            if v is not None:
                h[name] = float(np.clip(v, 0.0, 1.0))
        di = rep.get("disparate_impact")
        if di is not None:
            h["disparate_impact"] = float(np.clip(1.0 - di, 0.0, 1.0))
        if h:
            hooks[attr] = h
    worst = [v for h in hooks.values() for v in h.values()]
    return {"gaps": hooks, "worst": max(worst) if worst else None,
            "definition": "absolute between-group gaps clipped to [0,1]; disparate_impact as 1 - ratio; 0 = parity"}
