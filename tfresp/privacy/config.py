"""Config of the privacy concern (DP-SGD)."""
from typing import Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from tfresp._configbase import Section


class PrivacyConfig(Section):
    """DP-SGD settings. Give ``target_epsilon`` (σ is calibrated to it) or ``noise_multiplier``.

    Giving both fixes σ and makes ``target_epsilon`` a hard budget: training stops before the step that
    would exceed it. ``delta: auto`` means the largest power of ten below 1/n (n = training rows).
    ``sampling: poisson`` samples every row with probability q = batch_size / n per step (what the
    accountant assumes); ``shuffle`` uses fixed-size shuffled batches (the Poisson accounting is then an
    approximation, and the report says so).
    """

    target_epsilon: Optional[float] = Field(None, gt=0)
    delta: Union[Literal["auto"], float] = "auto"
    l2_norm_clip: float = Field(1.0, gt=0)
    noise_multiplier: Optional[float] = Field(None, ge=0)
    sampling: Literal["poisson", "shuffle"] = "poisson"
    accountant: Literal["rdp", "pld"] = "pld"
    clipping: Literal["auto", "ghost", "vectorized"] = "auto"
    audit: bool = True
    canaries: int = Field(0, ge=0)

    @field_validator("delta")
    @classmethod
    def _delta(cls, v):
        if isinstance(v, float) and not 0 < v < 1:
            raise ValueError("delta must be in (0, 1) or 'auto'")
        return v

    @model_validator(mode="after")
    def _check(self):
        if self.target_epsilon is None and self.noise_multiplier is None:
            raise ValueError("set target_epsilon or noise_multiplier")
        return self
