"""The fairness concern's private run state (``ctx.own("fairness")``)."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional


@dataclasses.dataclass
class FairnessState:
    """Attributes:
        mitigation: the report's ``fairness.mitigation`` as planned (completed by the audit).
        adversary: the ``AdversaryHolder`` of ``mitigation: adversarial``.
        clp_table: the identity-term swap table of ``mitigation: clp``.
        saved_thresholds: a finished run's ``thresholds.json`` (``tfresp audit --fairness`` re-uses its rule).
        served_test: the served binary test decisions (1 = positive) of ``mitigation: threshold``, set post-fit;
            None: the raw model is served.
    """

    mitigation: Dict[str, Any] = dataclasses.field(default_factory=dict)
    adversary: Any = None
    clp_table: Any = None
    saved_thresholds: Optional[dict] = None
    served_test: Any = None
