"""Report values said in words: the served per-group threshold rules.

A fitted rule (fairlearn's ThresholdOptimizer, ``fairness.mitigation.rules``) is stored as raw fields:
with probability ``p_ignore`` the decision is ``constant``; otherwise with probability ``p0`` it is
``score op0 t0`` and with ``p1`` it is ``score op1 t1``. For a reader the useful form is the probability of
the positive decision in each score band, e.g. "Female: >50K if score > 0.251; >50K with probability 0.37 if
0.124 < score ≤ 0.251; otherwise <=50K".
"""
from __future__ import annotations

import math
from typing import List, Optional

_OPS = {">": lambda s, t: s > t, ">=": lambda s, t: s >= t, "<": lambda s, t: s < t, "<=": lambda s, t: s <= t}


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def positive_probability(rule: dict, score: float) -> Optional[float]:
    """P(positive decision | score) under a stored rule; None when the rule is not in the known form."""
    p_ignore = rule.get("p_ignore", 0.0) or 0.0
    total = p_ignore * (rule.get("constant", 0.0) or 0.0)
    for i in (0, 1):
        p, op, t = rule.get(f"p{i}"), rule.get(f"op{i}"), rule.get(f"t{i}")
        if p is None and op is None and t is None:
            continue
        if not (_is_num(p) and _is_num(t) and op in _OPS):
            return None
        total += (1 - p_ignore) * p * (1.0 if _OPS[op](score, t) else 0.0)
    return min(1.0, max(0.0, total))


def _band(lo: Optional[float], hi: Optional[float], lo_open: bool, hi_open: bool) -> str:
    if lo is None and hi is None:
        return "for every score"
    if lo is None:
        return f"if score {'<' if hi_open else '≤'} {hi:.3g}"
    if hi is None:
        return f"if score {'>' if lo_open else '≥'} {lo:.3g}"
    return f"if {lo:.3g} {'<' if lo_open else '≤'} score {'<' if hi_open else '≤'} {hi:.3g}"


def rule_in_words(group: str, rule: dict, positive: str = "positive", negative: str = "negative") -> Optional[str]:
    """``"<group>: <positive> if score > 0.25; <positive> with probability 0.37 if ...; otherwise <negative>"``.

    The score is the model's probability of the positive class. Returns None when ``rule`` is not a
    threshold rule of the stored form (the report then shows the raw fields).
    """
    if not isinstance(rule, dict):
        return None
    cuts = sorted({float(rule[f"t{i}"]) for i in (0, 1) if _is_num(rule.get(f"t{i}"))})
    if positive_probability(rule, 0.5) is None:
        return None
    # bands between the cut points, and the cut points themselves (a ">" rule puts t in the lower band)
    bands = []
    edges = [None] + cuts + [None]
    for i in range(len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        probe = (lo + hi) / 2 if lo is not None and hi is not None else (
            (hi - 1.0) if lo is None and hi is not None else ((lo + 1.0) if lo is not None else 0.5))
        bands.append([lo, hi, True, True, positive_probability(rule, probe)])
    for t in cuts:  # attach the point t to the band (below or above) that has its probability
        at = positive_probability(rule, t)
        for b in bands:
            if b[1] == t and b[4] == at:
                b[3] = False
                break
            if b[0] == t and b[4] == at:
                b[2] = False
                break
        else:
            bands.append([t, t, False, False, at])
    bands.sort(key=lambda b: (b[0] if b[0] is not None else -math.inf))
    merged: List[list] = []
    for b in bands:  # neighbouring bands with the same probability read as one
        if merged and merged[-1][4] == b[4]:
            merged[-1][1], merged[-1][3] = b[1], b[3]
        else:
            merged.append(list(b))
    parts, negative_bands = [], 0
    for lo, hi, lo_open, hi_open, p in sorted(merged, key=lambda b: -(b[0] if b[0] is not None else -math.inf)):
        if p <= 0:
            negative_bands += 1
            continue
        shown = f"{p:.2f}" if 0.01 <= p <= 0.99 else f"{p:.4f}"  # 0.9975 is not "1.00"
        what = positive if p >= 1 else f"{positive} with probability {shown}"
        parts.append(f"{what} {_band(lo, hi, lo_open, hi_open)}")
    if not parts:
        return f"{group}: always {negative}"
    tail = f"; otherwise {negative}" if negative_bands else ""
    return f"{group}: " + "; ".join(parts) + tail


def rules_in_words(mitigation: dict, positive: str = "positive", negative: str = "negative") -> List[str]:
    """The served rules of ``fairness.mitigation`` in words, one line per group (empty when there are none)."""
    rules = mitigation.get("rules") if isinstance(mitigation, dict) else None
    if not isinstance(rules, dict):
        return []
    out = []
    for group, rule in rules.items():
        text = rule_in_words(str(group), rule, positive, negative)
        if text is not None:
            out.append(text)
    return out
