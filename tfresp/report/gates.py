"""Release gates: thresholds on report.json numbers that decide the exit code.

A gate is either a string ``"<report.path> <op> <number>"`` or a dict
``{metric, op, threshold, weight, name}`` (see :class:`tfresp.report.config.GateSpec`).
A gate whose metric is missing from the run's report fails (an audit that did not run
cannot pass a release check). The weighted gate score is ``Σ_k w_k · pass_k / Σ_k w_k``.

Example:
    >>> res = evaluate(["accuracy >= 0.8", {"metric": "privacy.epsilon", "op": "<=", "threshold": 8}], report)
    >>> res["passed"], res["failed"]
"""
from __future__ import annotations

import dataclasses
import math
import operator
from typing import Optional

from tfresp.errors import ConfigError
from tfresp.evaluation.served import served_path
from tfresp.report.config import GATE_PATTERN, GateSpec

_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}


@dataclasses.dataclass(frozen=True)
class Gate:
    """A parsed gate."""

    metric: str
    op: str
    threshold: float
    weight: float = 1.0
    name: Optional[str] = None

    @property
    def text(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"

    @classmethod
    def parse(cls, item, index: int = 0) -> "Gate":
        """Parse a string, dict or :class:`GateSpec`; raise :class:`ConfigError` naming ``gates[index]``."""
        if isinstance(item, Gate):
            return item
        if isinstance(item, str):
            m = GATE_PATTERN.match(item)
            if not m:
                raise ConfigError([(f"gates[{index}]", item,
                                    "expected '<metric.path> <op> <number>' with op in <=, >=, <, >, ==")])
            return cls(m.group(1), m.group(2), float(m.group(3)))
        if isinstance(item, dict):
            try:
                item = GateSpec.model_validate(item)
            except Exception as exc:  # pydantic.ValidationError: report it as a config problem
                raise ConfigError([(f"gates[{index}]", item, f"expected {{metric, op, threshold, weight}} ({exc})")]) \
                    from None
        if isinstance(item, GateSpec):
            return cls(item.metric, item.op, float(item.threshold), float(item.weight), item.name)
        raise ConfigError([(f"gates[{index}]", item, "expected a string or a {metric, op, threshold} mapping")])


def resolve(report: dict, path: str):
    """``(number, path read)`` at dotted ``path`` in the report, or ``(None, None)``.

    Keys may themselves contain dots (``robustness.pgd@0.1.accuracy``): the longest key that
    matches is taken first. A bare metric (``accuracy``) is the *served* model's metric: it is looked up
    under ``evaluation.served`` when a post-processing (fairness group thresholds) changes the served
    decisions, else under ``evaluation.test``. The raw model stays reachable as ``evaluation.test.<metric>``.
    """
    for cand in (path, f"{served_path(report)}.{path}"):
        node = report
        parts = cand.split(".")
        i = 0
        ok = True
        while i < len(parts):
            for j in range(len(parts), i, -1):
                key = ".".join(parts[i:j])
                if isinstance(node, dict) and key in node:
                    node = node[key]
                    i = j
                    break
            else:
                ok = False
                break
        if ok and isinstance(node, (int, float)) and not isinstance(node, bool):
            value = float(node)
            return (None, None) if math.isnan(value) else (value, cand)
    return None, None


def lookup(report: dict, path: str):
    """The number at dotted ``path`` in the report, or None (see :func:`resolve`)."""
    return resolve(report, path)[0]


_CORE_SECTIONS = ("robustness.", "compression.", "explanations.")


def model_read(report: dict, read: str | None) -> str | None:
    """Which model a report path describes: the served model (post-processing included) or the raw core.

    ``evaluation.served.*`` and ``fairness.*`` (the fairness audit scores the served decisions) are the
    served model; ``evaluation.test.*`` is the served model only when nothing post-processes it. Robustness,
    compression and explanations evaluate the core model, which is not what is served when a post-processing
    is. Other paths (privacy, training, scorecard) are not a model's test decisions: None.
    """
    if read is None:
        return None
    post = served_path(report) != "evaluation.test"
    if read.startswith(("evaluation.served.", "evaluation.test_postprocessed.", "fairness.")):
        return "served, post-processed" if post else "served"
    if read.startswith("evaluation.test."):
        return "raw core, not served (the served model post-processes it)" if post else "served"
    if read.startswith(_CORE_SECTIONS):
        return "raw core, not served (the served model post-processes it)" if post else "served"
    return None


def evaluate_gates(gates, report: dict) -> list:
    """One result dict per gate (value, passed, margin, reason), in config order."""
    results = []
    for i, item in enumerate(gates or []):
        g = Gate.parse(item, i)
        value, read = resolve(report, g.metric)
        passed = value is not None and _OPS[g.op](value, g.threshold)
        reason = None
        if value is None:
            reason = "metric not found in this run's report (did the audit that produces it run?)"
        elif not passed:
            reason = f"{g.metric} = {value:.6g} does not satisfy {g.op} {g.threshold:g}"
        results.append({"gate": item if isinstance(item, str) else g.text, "name": g.name, "metric": g.metric,
                        "op": g.op, "threshold": g.threshold, "weight": g.weight, "value": value,
                        "read": read, "model": model_read(report, read),
                        "margin": None if value is None else _margin(value, g.op, g.threshold),
                        "passed": bool(passed), "reason": reason})
    return results


def _margin(value: float, op: str, threshold: float) -> float:
    """Signed slack: positive when the gate passes with room to spare."""
    if op in ("<=", "<"):
        return threshold - value
    if op in (">=", ">"):
        return value - threshold
    return -abs(value - threshold)


def summarize(results: list) -> dict:
    total_w = sum(r["weight"] for r in results)
    score = sum(r["weight"] for r in results if r["passed"]) / total_w if total_w > 0 else None
    return {"results": results, "passed": all(r["passed"] for r in results), "count": len(results),
            "failed": [r["gate"] for r in results if not r["passed"]], "weighted_score": score}


def evaluate(gates, report: dict, scorecard: Optional[dict] = None) -> dict:
    """Evaluate the config's gates, plus the scorecard's ``min_ethics`` / ``max_bias`` thresholds.

    Args:
        gates: the config's ``gates`` list (strings, dicts or GateSpec).
        report: the report dict (report.json).
        scorecard: the report's computed ``scorecard`` section (adds gates on E and B when it has thresholds).

    Returns:
        ``{results, passed, count, failed, weighted_score}``.
    """
    results = evaluate_gates(gates, report)
    if scorecard:
        for key, op, score in (("min_ethics", ">=", "ethics"), ("max_bias", "<=", "bias")):
            thr = scorecard.get(key)
            if thr is None:
                continue
            value = (scorecard.get(score) or {}).get("normalized")
            passed = value is not None and _OPS[op](value, thr)
            models = sorted({t.get("model") for t in (scorecard.get(score) or {}).get("terms") or []} - {None})
            results.append({"gate": f"scorecard.{score}.normalized {op} {thr:g}", "name": f"{score} score",
                            "metric": f"scorecard.{score}.normalized", "op": op, "threshold": float(thr),
                            "weight": 1.0, "value": value, "read": f"scorecard.{score}.normalized",
                            "model": "; ".join(models) or None,
                            "margin": None if value is None else _margin(value, op, thr), "passed": bool(passed),
                            "reason": None if passed else ("no terms of this score were available" if value is None
                                                           else f"{score} score {value:.4f} does not satisfy "
                                                                f"{op} {thr:g}")})
    return summarize(results)


def failure_lines(gates_section: Optional[dict]) -> list:
    """One human-readable line per failed gate (what ``tfresp report --check`` prints)."""
    if not gates_section:
        return []
    out = []
    for r in gates_section.get("results", []):
        if not r["passed"]:
            if r["value"] is None:
                out.append(f"FAILED gate {r['gate']}: {r.get('reason') or 'metric missing'}")
            else:
                read = f" (read {r['read']}; model: {r['model']})" if r.get("read") and r.get("model") else ""
                out.append(f"FAILED gate {r['gate']}: value {r['value']:.6g}{read}")
    return out
