"""Config of the fairness concern."""
from typing import Dict, List, Literal, Optional

from pydantic import Field, field_validator

from tfresp._configbase import Section

METRIC_NAMES = ("selection_rate", "true_positive_rate", "false_positive_rate", "false_negative_rate",
                "true_negative_rate", "accuracy", "precision", "ece")


class FairnessConfig(Section):
    """Group metrics, confidence intervals and mitigation.

    Attributes:
        sensitive: attributes to audit; defaults to ``data.sensitive``.
        privileged: optional ``{attribute: group}``; ratios such as disparate impact are then taken
            against that reference group instead of the best-off group.
        metrics: group metrics to report (subset of ``METRIC_NAMES``; default all).
        constraint: the gap a mitigation targets.
        mitigation: ``none | reweigh | mmd | adversarial | clp | threshold``.
        weight: strength of the in-training mitigation (MMD / adversary / CLP loss weight).
        thresholds: decision thresholds of the sweep (default 0.1 ... 0.9).
        decision_threshold: the threshold on P(class 1) that defines a positive decision.
        min_group_size: groups (or intersections) smaller than this are reported as suppressed.
        bootstrap: number of bootstrap resamples for confidence intervals (0 turns CIs off).
        confidence: two-sided level of the percentile bootstrap intervals.
        intersectional: also audit the cross product of the first two sensitive attributes.
        mitigate_on: attributes whose (joint) groups the mitigation uses; default the first sensitive one.
        identity_terms: CLP swap lists, e.g. ``[[he, she], [man, woman]]``.
        tolerance: the target gap of every mitigation (its `verdict` on test) and the validation gap a
            threshold post-processing must stay within to be `feasible`.
        adversary_hidden: hidden width of the adversary head (0 = logistic adversary).
        mmd_bandwidth: Gaussian kernel length scale of the MMD penalty (MinDiff default 0.1).
        reweigh_epsilon: under DP, the ε of the Laplace mechanism used to release the group x label
            counts the Kamiran-Calders weights come from (reported; adds to the run's ε by composition).
        positive_class: the class whose selection is audited (default: ``data.positive_class``, else
            index 1 of the classes for binary tasks, the last class for multi-class tasks, one-vs-rest).
        allow_trivial: serve a threshold post-processing whose rule ignores the model for some group
            (all-positive, all-negative or a constant coin); refused (not served) by default.
    """

    sensitive: Optional[List[str]] = None
    privileged: Optional[Dict[str, str]] = None
    metrics: Optional[List[Literal[METRIC_NAMES]]] = None
    constraint: Literal["demographic_parity", "equalized_odds", "equal_opportunity"] = "equalized_odds"
    mitigation: Literal["none", "reweigh", "mmd", "adversarial", "clp", "threshold"] = "none"
    weight: float = Field(1.0, ge=0)
    thresholds: Optional[List[float]] = None
    decision_threshold: float = Field(0.5, gt=0, lt=1)
    min_group_size: int = Field(30, ge=1)
    bootstrap: int = Field(200, ge=0, le=100_000)
    confidence: float = Field(0.95, gt=0, lt=1)
    intersectional: bool = True
    mitigate_on: Optional[List[str]] = None
    identity_terms: Optional[List[List[str]]] = None
    tolerance: float = Field(0.02, ge=0, le=1)
    adversary_hidden: int = Field(16, ge=0)
    mmd_bandwidth: float = Field(0.1, gt=0)
    reweigh_epsilon: float = Field(0.1, gt=0)
    positive_class: Optional[str] = None
    allow_trivial: bool = False

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v):
        if v is not None and (not v or any(not 0 < t < 1 for t in v)):
            raise ValueError("must be a non-empty list of thresholds in (0, 1)")
        return v

    @field_validator("identity_terms")
    @classmethod
    def _terms(cls, v):
        if v is not None and any(len(pair) < 2 for pair in v):
            raise ValueError("each entry must list at least two interchangeable identity terms")
        return v
