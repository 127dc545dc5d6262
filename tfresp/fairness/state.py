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
    """

    mitigation: Dict[str, Any] = dataclasses.field(default_factory=dict)
    adversary: Any = None
    clp_table: Any = None
    saved_thresholds: Optional[dict] = None
