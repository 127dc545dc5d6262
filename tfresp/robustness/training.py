"""Adversarial-training pieces composed into :class:`~tfresp.models.base.ResponsibleModel`.

Each piece is per-example, so DP-SGD (a ``gradient_fn`` over ``ResponsibleModel.per_example_loss``)
clips the gradient of the *adversarial* loss of each example:

* :func:`madry_transform` -> ``Contribution.input_transform``: replace (a ``mix`` fraction of) the
  batch by PGD adversarial examples and train on them (Madry et al. 2018).
* :func:`trades_term` -> ``Contribution.per_example_losses``: ``β · KL(f(x) ‖ f(x_adv))`` with
  ``x_adv`` maximising that KL (Zhang et al. 2019, "Theoretically Principled Trade-off between
  Robustness and Accuracy"); the clean cross-entropy is ResponsibleModel's base loss.
* :func:`noise_transform` -> ``Contribution.input_transform``: Gaussian noise injection
  (data augmentation baseline; Cohen, Rosenfeld & Kolter 2019 train this way for randomized smoothing).

The attack inside training uses ``core(x, training=False)`` (no dropout; models must not mix
examples), and its output is gradient-stopped: the outer gradient is the gradient of the loss *at*
``x_adv`` (Danskin's theorem), never through the attack.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import tensorflow as tf

from tfresp.robustness import attacks


@dataclasses.dataclass
class AttackSpace:
    """Where an attack may move an encoded input.

    Attributes:
        mask: 1 for attackable coordinates (broadcastable to x) or None for all.
        clip_min, clip_max: valid range (scalars or per-coordinate arrays) or None.
        units: human-readable unit of ε for the report.
    """

    mask: Any = None
    clip_min: Any = None
    clip_max: Any = None
    units: str = ""

    def kwargs(self) -> dict:
        return {"mask": self.mask, "clip_min": self.clip_min, "clip_max": self.clip_max}


def _mix(x, x_adv, mix: float, seed: Optional[int] = None):
    """Per-example choice: adversarial with probability ``mix``, clean otherwise."""
    if mix >= 1.0:
        return x_adv
    if mix <= 0.0:
        return x
    pick = tf.random.uniform(tf.shape(x)[:1], seed=seed) < mix
    return tf.where(attacks._expand(pick, x), x_adv, x)


def epsilon_at(model, cfg, total_steps: int = 0):
    """The training ε at the optimizer's current step: linear ramp over ``epsilon_warmup`` of training."""
    warm = int(round(cfg.epsilon_warmup * total_steps))
    opt = getattr(model, "optimizer", None)
    if warm <= 0 or opt is None:
        return cfg.epsilon
    step = tf.cast(opt.iterations, tf.float32)
    return cfg.epsilon * tf.minimum(1.0, (step + 1.0) / float(warm))


def madry_transform(cfg, space: AttackSpace, total_steps: int = 0):
    """``input_transform`` training on PGD (or FGSM) adversarial examples (Madry et al. 2018).

    Args:
        cfg: the ``robustness`` config section (attack, norm, epsilon, steps, mix, epsilon_warmup).
        space: the attack space (mask, valid range).
        total_steps: training steps of the run (for the ε warm-up).
    """

    def transform(model, x, y, extras):
        def core_fn(inp):
            return model.core(inp, training=False)

        eps = epsilon_at(model, cfg, total_steps)
        if cfg.attack == "fgsm":
            x_adv = attacks.fgsm(core_fn, x, y, eps, norm=cfg.norm, **space.kwargs())
        else:
            x_adv = attacks.pgd(core_fn, x, y, eps, norm=cfg.norm, steps=cfg.steps,
                                step_size=cfg.step_size, random_start=True, restarts=1, **space.kwargs())
        return _mix(x, x_adv, cfg.mix)

    return transform


def kl_divergence(p_logits, q_logits):
    """Per-example ``KL(softmax(p) ‖ softmax(q))`` ``[B]``."""
    p_log = tf.nn.log_softmax(p_logits, axis=-1)
    q_log = tf.nn.log_softmax(q_logits, axis=-1)
    return tf.reduce_sum(tf.exp(p_log) * (p_log - q_log), axis=-1)


def trades_term(cfg, space: AttackSpace, total_steps: int = 0):
    """Per-example TRADES regulariser ``β · KL(f(x) ‖ f(x_adv))`` (Zhang et al. 2019).

    The inner maximisation starts at ``x + 0.001·N(0, 1)`` and runs ``steps`` PGD steps on the KL
    to the (fixed) clean prediction, as in the paper's reference implementation.
    """

    def term(model, x, y, logits, extras, training):
        clean_ref = tf.stop_gradient(model.core(x, training=False))

        def kl_objective(adv_logits, ref):
            return kl_divergence(ref, adv_logits)

        def core_fn(inp):
            return model.core(inp, training=False)

        x_adv = attacks.pgd(core_fn, x, clean_ref, epsilon_at(model, cfg, total_steps), norm=cfg.norm,
                            steps=cfg.steps,
                            step_size=cfg.step_size, random_start=False, start_noise=0.001,
                            objective=kl_objective, **space.kwargs())
        adv_logits = model.core(x_adv, training=training)
        kl = kl_divergence(logits, adv_logits)
        w = extras.get("sample_weight") if isinstance(extras, dict) else None
        if w is not None:
            kl = kl * tf.cast(w, kl.dtype)
        return cfg.trades_beta * kl

    return term


def noise_transform(cfg, space: AttackSpace):
    """``input_transform`` adding ``N(0, noise_std²)`` to attackable coordinates, clipped to the valid range."""

    def transform(model, x, y, extras):
        noise = tf.random.normal(tf.shape(x), stddev=cfg.noise_std, dtype=x.dtype)
        if space.mask is not None:
            noise = noise * tf.cast(space.mask, x.dtype)
        x_noisy = x + noise
        if space.clip_min is not None:
            x_noisy = tf.maximum(x_noisy, tf.cast(space.clip_min, x.dtype))
        if space.clip_max is not None:
            x_noisy = tf.minimum(x_noisy, tf.cast(space.clip_max, x.dtype))
        return _mix(x, tf.stop_gradient(x_noisy), cfg.mix)

    return transform
