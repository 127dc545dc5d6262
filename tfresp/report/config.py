"""Config of release gates and the ethics/bias scorecard (``gates:`` and ``scorecard:``).

Gates come in two spellings, both kept in the resolved config exactly as written:

    gates:
      - "accuracy >= 0.8"                                   # string: <report.path> <op> <number>
      - {metric: fairness.sex.equalized_odds_difference, op: "<=", threshold: 0.05, weight: 2}

The scorecard defines the ethics score E(θ) and the bias score B(θ) (see :mod:`tfresp.report.scorecard`):

    scorecard:
      ethics:                       # E(θ) = Σ_j α_j · f_j, f_j ∈ [0, 1], higher is better
        - {metric: accuracy, weight: 1}
        - {metric: privacy.epsilon, weight: 0.5, direction: lower, scale: 10}
      bias:                         # B(θ) = Σ_j β_j · g_j, g_j ∈ [0, 1], higher is more biased
        - {metric: fairness.sex.equalized_odds_difference, weight: 1}
      min_ethics: 0.6               # optional gates on the normalized scores (exit 1 when failed)
      max_bias: 0.1
"""
from __future__ import annotations

import re
from typing import List, Literal, Optional, Union

from pydantic import Field, field_validator

from tfresp._configbase import Section

_NUMBER = r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+\-]?[0-9]+)?"  # one number: '1.2.3' is refused
GATE_PATTERN = re.compile(r"^\s*([A-Za-z0-9_.@\-]+)\s*(<=|>=|==|<|>)\s*(" + _NUMBER + r")\s*$")


def _check_metric(v: str) -> str:
    if not v or not re.match(r"^[A-Za-z0-9_.@\-]+$", v):
        raise ValueError("must be a dotted report path such as 'fairness.sex.equalized_odds_difference'")
    return v


class GateSpec(Section):
    """One release gate in dict form.

    Attributes:
        metric: dotted path into report.json (``privacy.epsilon``, ``robustness.pgd@0.1.accuracy``); a bare
            metric name (``accuracy``) is the served model's: ``evaluation.served`` when a post-processing
            changes the served decisions, else ``evaluation.test`` (the raw model: ``evaluation.test.<metric>``).
        op: comparison, one of ``<=, >=, <, >, ==``.
        threshold: the number the metric is compared with.
        weight: weight of this gate in the weighted gate score (Σ w·pass / Σ w).
        name: optional label shown in the report.
    """

    metric: str
    op: Literal["<=", ">=", "<", ">", "=="]
    threshold: float
    weight: float = Field(1.0, ge=0)
    name: Optional[str] = None

    @field_validator("metric")
    @classmethod
    def _metric(cls, v):
        return _check_metric(v)


def check_gate_string(v: str) -> str:
    if not GATE_PATTERN.match(v):
        raise ValueError(f"gate {v!r}: expected '<metric.path> <op> <number>' with op in <=, >=, <, >, ==")
    return v


GateItem = Union[str, GateSpec]


class ScoreTerm(Section):
    """One term of the ethics or bias score.

    Attributes:
        metric: dotted report path (as for gates).
        weight: α_j (ethics) or β_j (bias), ≥ 0.
        direction: ``higher`` when a larger metric is better (accuracy), ``lower`` when smaller is better
            (ε, a fairness gap). ``auto`` infers it from the metric name.
        scale: the metric value mapped to the end of [0, 1]: a ``higher`` term scores ``clip(v / scale)``,
            a ``lower`` term ``clip(1 - v / scale)`` in the ethics score; bias terms use ``clip(v / scale)``.
            ``null`` picks a documented default (10 for ε, 1 otherwise).
    """

    metric: str
    weight: float = Field(1.0, ge=0)
    direction: Literal["auto", "higher", "lower"] = "auto"
    scale: Optional[float] = Field(None, gt=0)

    @field_validator("metric")
    @classmethod
    def _metric(cls, v):
        return _check_metric(v)


class ScorecardConfig(Section):
    """Terms of E(θ) and B(θ) and optional thresholds on them (None: the documented default terms)."""

    ethics: Optional[List[ScoreTerm]] = None
    bias: Optional[List[ScoreTerm]] = None
    min_ethics: Optional[float] = Field(None, ge=0, le=1)
    max_bias: Optional[float] = Field(None, ge=0, le=1)
