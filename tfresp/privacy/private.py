"""``make_private``: DP-SGD for any Keras model in a plain ``model.fit``, in the style of Opacus' ``make_private``.

It builds the one DP-SGD mechanism (:class:`~tfresp.privacy.dpsgd.DPSGD`, also behind the ``privacy:`` config
section) and attaches it to the model: a DP gradient transform in its last slot (per-example clipping + Gaussian
noise, Abadi et al. 2016), the :class:`~tfresp.privacy.ledger.PrivacyLedger` that books every step, and the
Poisson dataset whose sampling rate is the one the accountant uses. The training step itself refuses batches not
drawn by that dataset, advances the DP step counter and stops at the budget; ``fit`` adds the ledger when it is
not passed. Everything else (loss, metrics, optimizer) is the user's ``compile``.

Example:
    >>> private = tfresp.make_private(core, l2_norm_clip=1.0, target_epsilon=3.0, num_examples=len(x),
    ...                               batch_size=64, epochs=3)
    >>> private.model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> private.model.fit(private.dataset(x, y), epochs=3, callbacks=[private.ledger])
    >>> private.ledger.epsilon   # <= 3.0
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf

from tfresp.privacy.dpsgd import DATASET_REFUSAL, DPSGD  # noqa: F401  (DATASET_REFUSAL: re-exported)

#: What :func:`make_private` returns (the DP-SGD mechanism: ``model``, ``ledger``, ``dataset(...)``, σ, q, δ, ...).
PrivateTraining = DPSGD


def make_private(model, *, num_examples: int, batch_size: int, epochs: int, l2_norm_clip: float = 1.0,
                 noise_multiplier: Optional[float] = None, target_epsilon: Optional[float] = None,
                 delta: Optional[float] = None, accountant: str = "pld", clipping_mode: str = "auto",
                 noise_seed: Optional[int] = None, static_shapes: bool = False) -> DPSGD:
    """Make ``model`` train with DP-SGD in a plain ``fit`` (Abadi et al. 2016, "Deep Learning with DP").

    Args:
        model: a ``keras.Model`` (wrapped in a ResponsibleModel) or a ResponsibleModel with its terms attached.
        num_examples: training rows ``n`` (the sampling rate is ``batch_size / n``).
        batch_size: expected Poisson batch size.
        epochs: planned epochs (noise calibration; training stops at ``target_epsilon``).
        l2_norm_clip: per-example gradient bound ``C``.
        noise_multiplier: σ > 0; when None it is calibrated so ``epochs`` reach ``target_epsilon``.
        target_epsilon: the budget (required when ``noise_multiplier`` is None; a hard stop otherwise).
        delta: δ (default: the largest power of ten below ``1/(10 n)``).
        accountant: ``pld`` or ``rdp`` (dp-accounting).
        clipping_mode: ``auto``, ``ghost`` or ``vectorized``.
        noise_seed: SECRET seed of the noise and sampling (default: drawn from ``secrets``); whoever knows it
            can subtract the noise.
        static_shapes: fixed-size (truncated, padded, accounted) Poisson batches, so ``jit_compile=True``
            compiles the step once (see :mod:`tfresp.privacy.dpsgd`).

    Returns:
        the :class:`~tfresp.privacy.dpsgd.DPSGD` mechanism with ``model``, ``ledger`` and ``dataset(x, y, ...)``.

    Raises:
        IncompatibleModelError: a layer mixes examples (BatchNorm), a batch-level term is attached, or the
            model's class has its own ``train_step``.
        ConfigError: neither ``noise_multiplier`` nor ``target_epsilon``, σ <= 0, or bad sizes.
    """
    strategy = tf.distribute.get_strategy() if tf.distribute.has_strategy() else getattr(
        getattr(model, "core", model), "distribute_strategy", None)
    dp = DPSGD(num_examples=num_examples, batch_size=batch_size, epochs=epochs, l2_norm_clip=l2_norm_clip,
               noise_multiplier=noise_multiplier, target_epsilon=target_epsilon, delta=delta, accountant=accountant,
               clipping_mode=clipping_mode, noise_seed=noise_seed, static_shapes=static_shapes, strategy=strategy)
    dp.attach(model)
    return dp
