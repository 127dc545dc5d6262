"""The robustness concern's private run state (``ctx.own("robustness")``)."""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class RobustnessState:
    """``space``: the :class:`~tfresp.robustness.training.AttackSpace` robust training used (the audit attacks the
    same coordinates and range); None when nothing was planned."""

    space: Any = None
