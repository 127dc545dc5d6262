"""Config of the privacy concern (DP-SGD)."""
from typing import Annotated, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from tfresp._configbase import Section


class NoiseBudget(Section):
    """The fields a DP mechanism's budget shares (DP-SGD here, client-level DP-FedAvg in ``federated.dp``): give
    ``target_epsilon`` (the noise is calibrated to it) or ``noise_multiplier`` (both: a hard budget stop)."""

    target_epsilon: Optional[float] = Field(None, gt=0)
    #: σ > 0: σ = 0 releases exact gradients (ε = ∞), which is not differential privacy
    noise_multiplier: Optional[float] = Field(None, gt=0)
    delta: Union[Literal["auto"], float] = "auto"
    accountant: Literal["pld", "rdp"] = "pld"

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


class PrivacyConfig(NoiseBudget):
    """DP-SGD settings. Give ``target_epsilon`` (σ is calibrated to it) or ``noise_multiplier``.

    Giving both fixes σ and makes ``target_epsilon`` a hard budget: training stops before the step that
    would exceed it. ``delta: auto`` means the largest power of ten ≤ 1/(10·n) (n = training rows).
    ``sampling: poisson`` samples every row with probability q = batch_size / n per step (what the
    accountant assumes); ``shuffle`` uses fixed-size shuffled batches in a secret order, accounted without
    amplification by sampling (one full-batch Gaussian release per epoch).
    """

    l2_norm_clip: float = Field(1.0, gt=0)
    sampling: Literal["poisson", "shuffle"] = "poisson"
    clipping: Literal["auto", "ghost", "vectorized"] = "auto"
    audit: bool = True
    canaries: int = Field(0, ge=0)
    #: fixed-size Poisson batches (truncated at a size whose overflow probability is accounted in δ, padded with
    #: zero-weight rows) so XLA compiles the step once; ``auto``: when ``train.jit_compile`` is true
    static_shapes: Union[Literal["auto"], bool] = "auto"
    #: ε of the DP preprocessing statistics (vocabularies, numeric ranges, means/stds) at the run's δ, part of
    #: target_epsilon; ``auto`` = 5% of target_epsilon (0.1 without a target): composed with DP-SGD by PLD it
    #: costs DP-SGD far less than 5% of its ε, and it keeps categories held by ≳1-3% of rows (Adult, ε=1-3).
    preprocessing_epsilon: Union[Literal["auto"], Annotated[float, Field(gt=0)]] = "auto"
