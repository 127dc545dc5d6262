"""The metrics of the model *as served*: one source of truth for every headline number.

``evaluation.served`` holds the test metrics of the decisions the exported SavedModel returns. When
nothing post-processes the model's output it is absent and ``evaluation.test`` is the served model.
The CLI summary, ``RunResult.metrics``, the model card header, the scorecard, ``compare`` and the
degenerate-model checks all read :func:`served_metrics`.
"""
from __future__ import annotations

from typing import Optional


def served_metrics(report: dict) -> dict:
    """``evaluation.served`` when a post-processing is served, else ``evaluation.test`` (``{}`` if none)."""
    ev = report.get("evaluation") if isinstance(report, dict) else None
    if not isinstance(ev, dict):
        return {}
    served = ev.get("served")
    return served if isinstance(served, dict) else (ev.get("test") or {})


def served_path(report: dict) -> str:
    """Dotted report path of the served test metrics (``evaluation.served`` or ``evaluation.test``)."""
    ev = (report.get("evaluation") or {}) if isinstance(report, dict) else {}
    return "evaluation.served" if isinstance(ev.get("served"), dict) else "evaluation.test"


def raw_metrics(report: dict) -> Optional[dict]:
    """The raw (not post-processed) model's test metrics when they differ from the served ones."""
    ev = (report.get("evaluation") or {}) if isinstance(report, dict) else {}
    return ev.get("test") if isinstance(ev.get("served"), dict) else None
