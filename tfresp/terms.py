"""Loss terms and input transforms as small objects for :class:`tfresp.ResponsibleModel` (any ``keras.Model``).

Each object wraps the mechanism the config-driven concerns use (same code path, same papers); it only stores its
arguments. A term is called ``term(model, x, y, outputs, extras, training)`` and returns ``[B]`` (``per_example =
True``: DP-SGD clips it with the rest of the loss) or a scalar (``per_example = False``: refused under DP). An input
transform exposes ``transform(model, x, y, extras) -> x'`` and runs inside the per-example loss.

Example:
    >>> model = tfresp.ResponsibleModel(core, terms=[tfresp.terms.AdversarialTraining(epsilon=0.1, steps=5),
    ...                                              tfresp.terms.MinDiff(group="group", weight=1.0)])
"""
from __future__ import annotations

from typing import Optional

from tfresp.fairness.mmd import SLICES, make_mmd_loss
from tfresp.robustness.config import RobustnessConfig
from tfresp.robustness.training import AttackSpace, madry_transform, noise_transform, trades_term


def _space(clip_min, clip_max, mask) -> AttackSpace:
    return AttackSpace(mask=mask, clip_min=clip_min, clip_max=clip_max)


class AdversarialTraining:
    """Input transform: train on PGD (or FGSM) adversarial examples (Madry et al. 2018).

    Args:
        epsilon: attack radius in input units. steps: PGD steps. attack: ``pgd`` | ``fgsm``. norm: ``linf`` | ``l2``.
        mix: fraction of each batch replaced by adversarial examples.
        clip_min, clip_max: valid input range (scalars or per-coordinate arrays). mask: 1 where the attack may move.
    """

    is_input_transform = True
    per_example = True

    def __init__(self, epsilon: float, steps: int = 10, attack: str = "pgd", norm: str = "linf", mix: float = 1.0,
                 clip_min=None, clip_max=None, mask=None):
        self.config = RobustnessConfig(train="madry", attack=attack, norm=norm, epsilon=epsilon, steps=steps, mix=mix)
        self.transform = madry_transform(self.config, _space(clip_min, clip_max, mask))

    def __repr__(self):
        return f"AdversarialTraining(epsilon={self.config.epsilon}, steps={self.config.steps})"


class GaussianNoiseTraining:
    """Input transform: add ``N(0, std²)`` to the inputs (clipped to the valid range) on a ``mix`` fraction."""

    is_input_transform = True
    per_example = True

    def __init__(self, std: float, mix: float = 1.0, clip_min=None, clip_max=None, mask=None):
        self.config = RobustnessConfig(train="noise", noise_std=std, mix=mix)
        self.transform = noise_transform(self.config, _space(clip_min, clip_max, mask))

    def __repr__(self):
        return f"GaussianNoiseTraining(std={self.config.noise_std})"


class Trades:
    """Per-example term ``β·KL(f(x) ‖ f(x_adv))`` (TRADES, Zhang et al. 2019); inside DP clipping."""

    per_example = True

    def __init__(self, epsilon: float, beta: float = 6.0, steps: int = 10, norm: str = "linf", clip_min=None,
                 clip_max=None, mask=None):
        self.config = RobustnessConfig(train="trades", norm=norm, epsilon=epsilon, steps=steps, trades_beta=beta)
        self._term = trades_term(self.config, _space(clip_min, clip_max, mask))

    def __call__(self, model, x, y, outputs, extras, training):
        return self._term(model, x, y, outputs, extras, training)


class MinDiff:
    """Batch term: MMD between the groups' positive-class scores (MinDiff, Prost et al. 2019).

    The group ids (ints ``0..n_groups-1``) come from the extras dict under ``group``. A batch quantity: it
    cannot be clipped per example, so :func:`tfresp.make_private` refuses it.

    Args:
        group: key of the group ids in the extras dict. n_groups: number of groups.
        constraint: ``demographic_parity`` | ``equal_opportunity`` | ``equalized_odds``.
        weight: multiplier. bandwidth: Gaussian kernel width. positive_index: the positive class's logit.
    """

    per_example = False

    def __init__(self, group: str = "group", n_groups: int = 2, constraint: str = "equalized_odds",
                 weight: float = 1.0, bandwidth: float = 0.1, positive_index: int = 1):
        if constraint not in SLICES:
            raise ValueError(f"Invalid value for argument `constraint`. Received: constraint={constraint!r}. "
                             f"Expected one of {sorted(SLICES)}")
        self.group = group
        self._loss = make_mmd_loss(constraint, int(n_groups), float(weight), float(bandwidth), int(positive_index))

    def __call__(self, model, x, y, outputs, extras, training):
        return self._loss(model, x, y, outputs, {"fair_group": extras[self.group]}, training)


def term_name(term) -> Optional[str]:
    """A readable name for reports."""
    return getattr(term, "__name__", None) or type(term).__name__
