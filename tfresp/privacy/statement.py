"""The privacy statement: a short paragraph on the guarantee, plus one table row per release.

The paragraph names every release of the training rows (by source and mechanism) and every item that is
public or not covered; the parameters of each release are in :func:`releases` (a table in report.html and
report.md, ``privacy.budget.spends`` in report.json), not repeated in the text.
"""
from __future__ import annotations

import json
from typing import Dict, List

#: what the guarantee does not protect, whatever the run did (part of every statement)
LIMITS = (
    "What it protects: the trained weights and everything computed from them (predictions, exports) reveal little "
    "about whether any single row was in the training set, even to an attacker who knows all other rows; δ is the "
    "small probability that this bound fails. What it does not protect: a person who contributes several rows "
    "(group privacy: ε grows about linearly with their number of rows); population-level facts learned from the "
    "data; logged training metrics (loss, accuracy); the validation and test splits and the audits computed on "
    "them; which source rows became training rows (the seeded split and data.max_rows, both stratified by label), "
    "so the guarantee is about the rows selected for training; hyper-parameter tuning on private data.")


def _num(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return f"{v:.4g}"


def _params(params: dict) -> str:
    parts = []
    for k, v in params.items():
        if isinstance(v, list):
            shown = ", ".join(map(str, v[:6])) + (f", … ({len(v)} in all)" if len(v) > 6 else "")
            parts.append(f"{k}: {shown}")
        else:
            parts.append(f"{k} = {_num(v)}")
    return "; ".join(parts)


def releases(sec: dict) -> List[Dict[str, object]]:
    """One row per release of the training rows, in the order they were spent (identical ones counted once).

    Each row: ``release`` (source), ``mechanism``, ``parameters`` (one readable string), ``count`` (how many
    identical releases), ``covers`` (the artifacts it produced).
    """
    rows: Dict[tuple, dict] = {}
    for s in (sec.get("budget") or {}).get("spends") or []:
        key = (s.get("source"), s.get("mechanism"), json.dumps(s.get("params"), sort_keys=True, default=str))
        if key in rows:
            rows[key]["count"] += 1
            continue
        rows[key] = {"release": str(s.get("source")), "mechanism": str(s.get("mechanism")),
                     "parameters": _params(s.get("params") or {}), "count": 1,
                     "covers": [str(c) for c in s.get("covers") or []]}
    return list(rows.values())


def _source_of(detail: str) -> str:
    return str(detail).split(" (", 1)[0]


def statement(sec: dict) -> str:
    """A plain-language paragraph on the guarantee, naming every release and what it covers or not.

    ``sec`` is the report's privacy section (epsilon, delta, steps, noise_multiplier, l2_norm_clip, sampling,
    sampling_rate, accountant, delta_times_n, budget).
    """
    if sec["sampling"] == "poisson":
        sampling = ("each step used a Poisson sample of the training rows (every row joined independently with "
                    f"probability q = {sec['sampling_rate']:.4g})")
    else:
        sampling = ("training used shuffled fixed-size batches in a secret order; ε is the no-amplification bound "
                    "(each epoch counted as one Gaussian release of every row), looser than Poisson accounting "
                    "but provable")
    budget = sec.get("budget") or {}
    cov = budget.get("coverage") or []
    text = (
        f"This model was trained with DP-SGD and the whole run satisfies ({sec['epsilon']:.3g}, {sec['delta']:.1e})-"
        "differential privacy with respect to adding or removing one training row (example-level adjacency; "
        f"δ·n = {sec['delta_times_n']:.2g}). DP-SGD ran {sec['steps']} steps with noise multiplier "
        f"{sec['noise_multiplier']:.4g} and per-example gradient clipping at L2 norm {sec['l2_norm_clip']:g}; "
        f"{sampling}.")
    extra_delta = budget.get("extra_delta") or 0.0
    if extra_delta:
        # each spend that carries its own δ term: the thresholded histograms (a rare value could pass the threshold)
        # and, with static shapes, DP-SGD's truncation of Poisson batches to batch_max
        terms = {}
        for sp in budget.get("spends") or []:
            d = float((sp.get("params") or {}).get("delta") or 0.0)
            if d:
                what = ("truncation of Poisson batches to a static size" if sp.get("source") == "privacy.dp_sgd"
                        else "failure probability of the thresholded histograms")
                terms[what] = terms.get(what, 0.0) + d
        parts = "; ".join(f"{d:.2e} for the {what}" for what, d in terms.items())
        text += (f" Of δ, {extra_delta:.2e} is set aside for mechanisms with their own δ term ({parts}); ε is "
                 f"composed at the remaining {sec['delta'] - extra_delta:.2e}.")
    rows = releases(sec)
    others = [r for r in rows if r["release"] != "privacy.dp_sgd"]
    accountant = str(sec.get("accountant", "")).upper()
    if others:
        text += (f" ε composes DP-SGD with {len(others)} other release(s) of the training rows ({accountant} "
                 "accountant): " + "; ".join(f"{r['release']} ({r['mechanism']})" + (f" ×{r['count']}" if
                                                                                   r["count"] > 1 else "")
                                             for r in others) + "; their parameters are in the table of releases.")
    else:
        text += f" ε is computed with the {accountant} accountant; DP-SGD is the only release."
    dp = [c for c in cov if c["status"] == "dp"]
    if dp:
        by_source: Dict[str, List[str]] = {}
        for c in dp:
            by_source.setdefault(_source_of(c["detail"]), []).append(c["item"])
        # full item names (searchable), each release's parameters once in the table, not after every item
        text += " Covered by DP: " + "; ".join(f"{', '.join(items)} (by {src})"
                                               for src, items in by_source.items()) + "."
    public = [c for c in cov if c["status"] == "public"]
    text += (" Treated as public (not protected): the number of training rows n and, where reported, the sizes of "
             "the sensitive groups" + ("; " + "; ".join(f"{c['item']} ({c['detail']})" for c in public)
                                      if public else "") + ".")
    uncovered = [c for c in cov if c["status"] == "not_covered"]
    if uncovered:
        text += " NOT covered by the guarantee: " + "; ".join(f"{c['item']} ({c['detail']})" for c in uncovered) + "."
    return text + " " + LIMITS
