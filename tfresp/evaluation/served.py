"""The metrics of the model *as served*: one source of truth for every headline number.

``evaluation.served`` holds the test metrics of the decisions the exported SavedModel returns. When
nothing post-processes the model's output it is absent and ``evaluation.test`` is the served model.
The CLI summary, ``RunResult.metrics``, the model card header, the scorecard, ``compare`` and the
degenerate-model checks all read :func:`served_metrics`.
"""
from __future__ import annotations

from typing import Optional

# schema 1.1 reports called the served metrics ``test_postprocessed``; still read
_SERVED_KEYS = ("served", "test_postprocessed")


def _served_key(report) -> Optional[str]:
    ev = report.get("evaluation") if isinstance(report, dict) else None
    if not isinstance(ev, dict):
        return None
    return next((k for k in _SERVED_KEYS if isinstance(ev.get(k), dict)), None)


def served_metrics(report: dict) -> dict:
    """``evaluation.served`` when a post-processing is served, else ``evaluation.test`` (``{}`` if none)."""
    ev = report.get("evaluation") if isinstance(report, dict) else None
    if not isinstance(ev, dict):
        return {}
    key = _served_key(report)
    return ev[key] if key else (ev.get("test") or {})


def served_path(report: dict) -> str:
    """Dotted report path of the served test metrics (``evaluation.served`` or ``evaluation.test``)."""
    key = _served_key(report)
    return f"evaluation.{key}" if key else "evaluation.test"


def raw_metrics(report: dict) -> Optional[dict]:
    """The raw (not post-processed) model's test metrics when they differ from the served ones."""
    return (report.get("evaluation") or {}).get("test") if _served_key(report) else None
