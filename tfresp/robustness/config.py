"""Config of the robustness concern."""
from typing import List, Literal

from pydantic import Field

from tfresp._configbase import Section


class RobustnessConfig(Section):
    """Adversarial training and evaluation (evaluation always uses a stronger attack)."""

    train: Literal["none", "madry", "trades", "noise"] = "none"
    attack: Literal["fgsm", "pgd"] = "pgd"
    norm: Literal["linf", "l2"] = "linf"
    epsilon: float = Field(0.1, ge=0)
    steps: int = Field(10, ge=1)
    mix: float = Field(1.0, ge=0, le=1)
    trades_beta: float = Field(6.0, ge=0)
    noise_std: float = Field(0.1, ge=0)
    eval_epsilons: List[float] = [0.05, 0.1]
    eval_steps: int = Field(50, ge=1)
    restarts: int = Field(5, ge=1)
    eval_examples: int = Field(500, ge=1)
