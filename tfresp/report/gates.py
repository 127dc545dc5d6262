"""Release gates: ``"<report.path> <op> <number>"`` checked against report.json."""
from __future__ import annotations

import math
import operator
import re

from tfresp.errors import ConfigError

_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}
_GATE = re.compile(r"^\s*([A-Za-z0-9_.@\-]+)\s*(<=|>=|==|<|>)\s*(-?[0-9.eE+\-]+)\s*$")


def parse_gate(text: str):
    m = _GATE.match(text)
    if not m:
        raise ConfigError([("gates", text, "expected '<metric.path> <op> <number>' with op in <=, >=, <, >, ==")])
    return m.group(1), m.group(2), float(m.group(3))


def lookup(report: dict, path: str):
    """Find ``path`` in the report: exact dotted keys first, then common prefixes."""
    candidates = [path, f"evaluation.test.{path}"]
    for cand in candidates:
        node = report
        ok = True
        parts = cand.split(".")
        i = 0
        while i < len(parts):
            # keys may themselves contain dots (e.g. 'pgd@0.1'): try the longest match first
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
            return float(node)
    return None


def evaluate(gates, report: dict) -> dict:
    results = []
    for text in gates:
        path, op, threshold = parse_gate(text)
        value = lookup(report, path)
        passed = value is not None and not math.isnan(value) and _OPS[op](value, threshold)
        results.append({"gate": text, "metric": path, "op": op, "threshold": threshold, "value": value,
                        "passed": bool(passed),
                        "reason": None if value is not None else "metric not found in this run's report"})
    return {"results": results, "passed": all(r["passed"] for r in results), "count": len(results),
            "failed": [r["gate"] for r in results if not r["passed"]]}
