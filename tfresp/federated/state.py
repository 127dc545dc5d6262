"""The federated concern's private run state (``ctx.own("federated")``)."""
from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass
class FederatedState:
    """``summary``: what :func:`tfresp.federated.train.fit_federated` measured (clients, rounds, sampling rate,
    seconds, partition, and under ``federated.dp`` σ, δ and ε); None until it ran."""

    summary: Optional[dict] = None
