"""The privacy concern's private run state (``ctx.own("privacy")``), set by its plan and read by its audit."""
from __future__ import annotations

import dataclasses
from typing import Any, Optional


@dataclasses.dataclass
class PrivacyState:
    """The DP-SGD mechanism as planned: σ and how it was chosen, q, δ, steps, the clipping mode, the ledger."""

    noise_multiplier: Optional[float] = None
    noise_source: str = ""
    sampling_rate: Optional[float] = None
    delta: Optional[float] = None
    steps_per_epoch: Optional[int] = None
    planned_steps: Optional[int] = None
    clipping_mode: Optional[str] = None
    clipping_reason: str = ""
    expected_batch_size: Optional[float] = None
    ledger: Any = None  # tfresp.privacy.ledger.PrivacyLedger
    dp: Any = None  # tfresp.privacy.dpsgd.DPSGD: the mechanism (sampler, seeds, step counter, accounting)
