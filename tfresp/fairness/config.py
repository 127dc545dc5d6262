"""Config of the fairness concern."""
from typing import List, Literal, Optional

from pydantic import Field

from tfresp._configbase import Section


class FairnessConfig(Section):
    """Group metrics and mitigation. ``sensitive`` defaults to ``data.sensitive``."""

    sensitive: Optional[List[str]] = None
    privileged: Optional[dict] = None
    metrics: Optional[List[str]] = None
    constraint: Literal["demographic_parity", "equalized_odds", "equal_opportunity"] = "equalized_odds"
    mitigation: Literal["none", "reweigh", "mmd", "adversarial", "clp", "threshold"] = "none"
    weight: float = Field(1.0, ge=0)
    thresholds: Optional[List[float]] = None
    min_group_size: int = Field(30, ge=1)
    bootstrap: int = Field(200, ge=0)
    intersectional: bool = True
    identity_terms: Optional[List[List[str]]] = None
