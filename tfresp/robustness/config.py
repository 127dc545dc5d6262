"""Config of the robustness concern."""
from typing import List, Literal, Optional

from pydantic import Field

from tfresp._configbase import Section


class RobustnessConfig(Section):
    """Adversarial training and evaluation (evaluation always uses a stronger attack).

    Attributes:
        train: none | madry (train on PGD/FGSM examples) | trades (CE + β·KL) | noise (Gaussian).
        attack: the training attack (fgsm | pgd); evaluation always runs PGD with ``eval_steps``
            steps and ``restarts`` random restarts (and FGSM / random noise for comparison).
        norm: linf | l2 threat model for training and evaluation.
        epsilon: training radius (pixels in [0, 1] for images; standard deviations for tabular).
        steps: training PGD steps; step_size: PGD step (default 2.5·ε/steps).
        mix: fraction of each batch trained on adversarial (madry) / noisy (noise) inputs.
        epsilon_warmup: fraction of the training steps over which the training ε ramps linearly from 0
            (helps Madry/TRADES training converge at large ε).
        eval_epsilons: evaluation sweep (the training ε is always added).
        large_epsilon: radius of the gradient-masking check (default: the whole valid range).
        noise_samples: draws of the black-box random-noise attack.
        sensitivity: compute D(θ) and the mean input-gradient norm.
        attack_categorical: also perturb one-hot columns of tabular data (off: they are frozen).
    """

    train: Literal["none", "madry", "trades", "noise"] = "none"
    attack: Literal["fgsm", "pgd"] = "pgd"
    norm: Literal["linf", "l2"] = "linf"
    epsilon: float = Field(0.1, ge=0)
    steps: int = Field(10, ge=1)
    mix: float = Field(1.0, ge=0, le=1)
    epsilon_warmup: float = Field(0.0, ge=0, le=1)
    trades_beta: float = Field(6.0, ge=0)
    noise_std: float = Field(0.1, ge=0)
    eval_epsilons: List[float] = [0.05, 0.1]
    eval_steps: int = Field(50, ge=1)
    restarts: int = Field(5, ge=1)
    eval_examples: int = Field(500, ge=1)
    step_size: Optional[float] = Field(None, gt=0)
    large_epsilon: Optional[float] = Field(None, gt=0)
    noise_samples: int = Field(20, ge=1)
    sensitivity: bool = True
    sensitivity_examples: int = Field(256, ge=1)
    attack_categorical: bool = False
