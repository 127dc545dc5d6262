"""The ethics score E(θ) and the bias score B(θ) of a run.

Definition (after the weighted-scorecard formulation of responsible-AI audits, e.g. Raji et al. 2020,
"Closing the AI accountability gap", FAT* '20):

    E(θ) = Σ_i Σ_j α_ij · f_j(M_θ(x_i))        B(θ) = Σ_i Σ_j β_ij · g_j(M_θ(x_i))

over the n test examples x_i and the configured metrics j. Each metric is mapped to [0, 1]:
``f_j`` is a *goodness* (1 best) and ``g_j = 1 - f_j`` a *badness* (1 worst):

* ``higher`` metrics (accuracy, robust accuracy, parity ratios): goodness ``clip(v / scale, 0, 1)``;
* ``lower`` metrics (ε, fairness differences, MIA AUC above chance): goodness ``clip(1 - v / scale, 0, 1)``.

Weights are spread uniformly over the examples a metric averages: α_ij = α_j / n_j. For a metric that is a
mean of per-example terms (accuracy = mean_i 1[ŷ_i = y_i], a group's recall = mean over that group's
positives) the inner sum is exactly α_j times the metric; for a dataset-level metric (ε, a demographic-parity
difference) f_j(M(x_i)) is the same number for every i. Hence, with the per-example definition kept,

    E(θ) = Σ_j α_j · f_j(value_j)     and     B(θ) = Σ_j β_j · g_j(value_j),

which is computable from report.json alone (so ``tfresp report`` re-computes it). Both are also reported
normalized by the weights of the terms that were available (``normalized`` ∈ [0, 1]); a term whose metric the
run did not produce is listed under ``missing`` and left out (it is not silently counted as perfect). No
differential privacy is ε = ∞ (goodness 0).

Default terms (no ``scorecard:`` in the config): E = test balanced accuracy, DP ε (scale 10), and the robust
accuracy at the largest evaluated attack ε; B = every attribute's demographic-parity and equalized-odds
differences (scale 1).
"""
from __future__ import annotations

import math
import re
from typing import Optional

import numpy as np

from tfresp.evaluation.degenerate import findings
from tfresp.evaluation.served import served_path
from tfresp.report.gates import model_read, resolve

_LOWER = re.compile(r"(epsilon|difference|_diff|gap|loss|mia_auc|latency|bytes|error|brier|ece|delta)", re.I)
_ROBUST_KEY = re.compile(r"^(?P<attack>[A-Za-z0-9_\-]+)@(?P<eps>[0-9.eE+\-]+)$")


def infer_direction(metric: str) -> str:
    """``lower`` for costs (ε, differences, losses, MIA AUC, latency, sizes), ``higher`` otherwise."""
    leaf = metric.split(".")[-1]
    return "lower" if _LOWER.search(leaf) else "higher"


def default_scale(metric: str) -> float:
    return 10.0 if metric.split(".")[-1] == "epsilon" else 1.0


def goodness(value: float, direction: str, scale: float) -> float:
    """Map a metric value to [0, 1] with 1 the best (see module docstring)."""
    if math.isinf(value):
        return 0.0 if (value > 0) == (direction == "lower") else 1.0
    x = value / scale
    g = x if direction == "higher" else 1.0 - x
    return float(min(1.0, max(0.0, g)))


def _robust_path(report: dict) -> Optional[str]:
    rob = report.get("robustness") or {}
    best = None
    for key, sec in rob.items():
        m = _ROBUST_KEY.match(str(key))
        if m and isinstance(sec, dict) and isinstance(sec.get("accuracy"), (int, float)):
            eps = float(m.group("eps"))
            if best is None or eps > best[0]:
                best = (eps, f"robustness.{key}.accuracy")
    return best[1] if best else None


def default_terms(report: dict) -> tuple[list, list]:
    # the decisions a post-processing mitigation actually serves, when there is one
    ethics = [{"metric": f"{served_path(report)}.balanced_accuracy", "weight": 1.0},
              {"metric": "privacy.epsilon", "weight": 1.0, "direction": "lower", "scale": 10.0}]
    rp = _robust_path(report)
    if rp:
        ethics.append({"metric": rp, "weight": 1.0, "direction": "higher"})
    bias = []
    for attr, sec in sorted((report.get("fairness") or {}).items()):
        if isinstance(sec, dict):
            for m in ("demographic_parity_difference", "equalized_odds_difference"):
                if isinstance(sec.get(m), (int, float)):
                    bias.append({"metric": f"fairness.{attr}.{m}", "weight": 1.0, "direction": "lower"})
    return ethics, bias


def _value(report: dict, metric: str):
    """``(value, note, path read)``: a bare metric is the served model's (see :func:`gates.resolve`)."""
    v, read = resolve(report, metric)
    if v is None and metric == "privacy.epsilon" and not report.get("privacy"):
        return math.inf, "no differential privacy in this run: epsilon = infinity", None
    return v, None, read


def score(terms: list, report: dict, kind: str) -> dict:
    """Weighted score of ``terms`` (dicts or ScoreTerm) for ``kind`` in {"ethics", "bias"}."""
    rows, missing = [], []
    for t in terms:
        t = t if isinstance(t, dict) else t.model_dump()
        metric = t["metric"]
        direction = t.get("direction") or "auto"
        direction = infer_direction(metric) if direction == "auto" else direction
        scale = t.get("scale") or default_scale(metric)
        weight = float(t.get("weight", 1.0))
        value, note, read = _value(report, metric)
        if value is None:
            missing.append(metric)
            continue
        good = goodness(value, direction, scale)
        term = good if kind == "ethics" else 1.0 - good
        rows.append({"metric": metric, "value": None if math.isinf(value) else value, "direction": direction,
                     "scale": scale, "weight": weight, "term": term, "contribution": weight * term, "note": note,
                     "read": read, "model": model_read(report, read)})
    total_w = sum(r["weight"] for r in rows)
    value = sum(r["contribution"] for r in rows)
    return {"value": value if rows else None, "normalized": value / total_w if total_w > 0 else None,
            "weights_total": total_w, "terms": rows, "missing": missing}


def per_example_stats(y: np.ndarray, proba: np.ndarray, groups: Optional[dict] = None,
                      threshold: float = 0.5) -> dict:
    """Per-example goodness terms of the test predictions, aggregated with explicit example weights.

    For every test example i: ``correct_i = 1[ŷ_i = y_i]``, ``p_i = P(y_i | x_i)`` and the Brier term
    ``Σ_k (P(k | x_i) − 1[y_i = k])²``. Reported as uniform means (α_ij = 1/n), plus, per sensitive attribute,
    the *group-balanced* mean of ``correct_i`` with α_ij = 1 / (G · n_g(i)) (each of the G groups weighs the
    same whatever its size) and the worst group's mean. These are the per-example f_j a scorecard term can
    reference as ``scorecard.per_example.<name>`` (e.g. ``scorecard.per_example.group_balanced_correct.sex``).
    """
    y = np.asarray(y).astype(int)
    proba = np.asarray(proba, dtype=np.float64)
    n, k = proba.shape
    yhat = (proba[:, 1] >= threshold).astype(int) if k == 2 else proba.argmax(axis=1)
    correct = (yhat == y).astype(np.float64)
    onehot = np.eye(k)[y]
    out = {"n": int(n), "threshold": float(threshold) if k == 2 else None,
           "correct": float(correct.mean()) if n else None,
           "true_class_probability": float(proba[np.arange(n), y].mean()) if n else None,
           "brier": float(((proba - onehot) ** 2).sum(axis=1).mean()) if n else None,
           "group_balanced_correct": {}, "worst_group_correct": {}}
    for attr, g in (groups or {}).items():
        if len(g) != n or n == 0:
            continue
        from tfresp.data.labels_compact import codes_of  # np.unique of astype(str), without a str per row

        names, inverse = codes_of(g)
        counts = np.bincount(inverse, minlength=len(names))
        weights = 1.0 / (len(names) * counts[inverse])          # α_ij = 1 / (G · n_g(i)); Σ_i α_ij = 1
        out["group_balanced_correct"][str(attr)] = float((weights * correct).sum())
        out["worst_group_correct"][str(attr)] = float(min(correct[inverse == j].mean() for j in range(len(names))))
    return out


def compute(report: dict, config: Optional[dict]) -> dict:
    """The report's ``scorecard`` section from report numbers and the config's ``scorecard`` mapping."""
    config = config or {}
    d_ethics, d_bias = default_terms(report)
    ethics_terms = config.get("ethics") if config.get("ethics") is not None else d_ethics
    bias_terms = config.get("bias") if config.get("bias") is not None else d_bias
    previous = report.get("scorecard") if isinstance(report.get("scorecard"), dict) else {}
    blocked = [f["code"] for f in findings(report) if f["blocks_green"]]
    return {
        # a degenerate model (single class, chance level, test == train) is never shown as good: its small
        # gaps and accuracy describe a constant predictor or training rows, not a fair, accurate model
        "blocked_by": blocked,
        "status": "not assessable: degenerate model (" + ", ".join(blocked) + ")" if blocked else "assessable",
        "per_example": previous.get("per_example"),  # computed once from the predictions at fit time
        "definition": "E = sum_j alpha_j * f_j, B = sum_j beta_j * (1 - f_j), f_j in [0,1] the goodness of "
                      "metric j (per-example weights alpha_ij = alpha_j / n); normalized = value / sum of "
                      "available weights",
        "source": "config" if (config.get("ethics") is not None or config.get("bias") is not None) else "default",
        "ethics": score(ethics_terms, report, "ethics"),
        "bias": score(bias_terms, report, "bias"),
        "min_ethics": config.get("min_ethics"),
        "max_bias": config.get("max_bias"),
    }
