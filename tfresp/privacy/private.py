"""``make_private``: DP-SGD for any Keras model in a plain ``model.fit``, in the style of Opacus' ``make_private``.

It returns the model with a DP gradient transform in its last slot (per-example clipping + Gaussian noise, Abadi
et al. 2016), the :class:`~tfresp.privacy.ledger.PrivacyLedger` callback that accounts every step, and a Poisson
dataset helper whose sampling rate is the one the accountant uses. Everything else (loss, metrics, optimizer) is
the user's ``compile``.

Example:
    >>> private = tfresp.make_private(core, l2_norm_clip=1.0, target_epsilon=3.0, num_examples=len(x),
    ...                               batch_size=64, epochs=3)
    >>> private.model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> private.model.fit(private.dataset(x, y), epochs=3, callbacks=[private.ledger])
    >>> private.ledger.epsilon   # <= 3.0
"""
from __future__ import annotations

import dataclasses
import secrets
from typing import Optional

import numpy as np
import tensorflow as tf

from tfresp.errors import ConfigError, DataError, IncompatibleModelError
from tfresp.models.base import ResponsibleModel
from tfresp.privacy import accounting, clipping
from tfresp.privacy.ledger import PrivacyLedger
from tfresp.privacy.sampling import poisson_dataset, steps_per_epoch

#: What DP-SGD needs from the data; said whenever a tf.data.Dataset is offered under DP.
DATASET_REFUSAL = (
    "DP-SGD needs random access to the training rows: each step draws a Poisson sample (every row joins "
    "independently with probability q), which is what the accountant's ε assumes, and each row must be one "
    "record for the add/remove-one-row guarantee. A tf.data.Dataset is a stream: tfresp can neither sample it "
    "that way nor see whether its pipeline repeats, augments or mixes rows")


@dataclasses.dataclass
class PrivateTraining:
    """What :func:`make_private` returns.

    Attributes:
        model: the :class:`~tfresp.models.base.ResponsibleModel` with the DP gradient transform.
        ledger: the :class:`~tfresp.privacy.ledger.PrivacyLedger` callback (pass it to ``fit``).
        noise_multiplier, sample_rate, delta, steps_per_epoch: the DP-SGD parameters the ledger accounts.
        clipping, clipping_reason: ``ghost`` or ``vectorized`` and why.
    """

    model: ResponsibleModel
    ledger: PrivacyLedger
    noise_multiplier: float
    sample_rate: float
    delta: float
    steps_per_epoch: int
    num_examples: int
    clipping: str
    clipping_reason: str
    _seed: int = dataclasses.field(default=0, repr=False)

    def dataset(self, x, y, sample_weight=None, extras: Optional[dict] = None) -> tf.data.Dataset:
        """Poisson-sampled ``(x, y, extras)`` batches of the ``num_examples`` rows (one epoch per iteration).

        Args:
            x, y: arrays (or a dict of arrays for ``x``) with ``num_examples`` rows.
            sample_weight: optional per-row weights (inside clipping).
            extras: optional dict of per-row arrays handed to the loss terms (e.g. ``{"fair_group": g}``).
        """
        if isinstance(x, tf.data.Dataset):
            raise DataError(f"Invalid value for argument `x`: a tf.data.Dataset cannot be used for DP-SGD. "
                            f"{DATASET_REFUSAL}. Received: x={type(x).__name__}. Remedy: pass the rows as arrays "
                            "(x, y) that hold one record per row")
        n = len(y)
        if n != self.num_examples:
            raise DataError(f"Invalid value for argument `y`: {n} rows, but make_private was told "
                            f"num_examples={self.num_examples} (the sampling rate and ε depend on it). Remedy: "
                            "call make_private with num_examples=len(y)")
        extras = dict(extras or {})
        if sample_weight is not None:
            extras["sample_weight"] = np.asarray(sample_weight, np.float32)
        return poisson_dataset(x, y, extras, self.sample_rate, self.steps_per_epoch, seed=self._seed)


def _guard(gradient_fn, mode: str):
    """Refuse, when the step is traced, any term that would escape clipping (added after make_private)."""

    def guarded(model, x, y, extras):
        clipping.check_no_batch_terms(model)
        if mode == "ghost" and (model.per_example_losses or model.input_transform is not None):
            raise IncompatibleModelError(
                "`terms`: a term or input transform was added after make_private chose ghost clipping (which "
                "only covers the plain loss). Remedy: attach every term before calling make_private")
        return gradient_fn(model, x, y, extras)

    guarded.mode = mode
    return guarded


def make_private(model, *, num_examples: int, batch_size: int, epochs: int, l2_norm_clip: float = 1.0,
                 noise_multiplier: Optional[float] = None, target_epsilon: Optional[float] = None,
                 delta: Optional[float] = None, accountant: str = "pld", clipping_mode: str = "auto",
                 noise_seed: Optional[int] = None) -> PrivateTraining:
    """Make ``model`` train with DP-SGD in a plain ``fit`` (Abadi et al. 2016, "Deep Learning with DP").

    Args:
        model: a ``keras.Model`` (wrapped in a ResponsibleModel) or a ResponsibleModel with its terms attached.
        num_examples: training rows ``n`` (the sampling rate is ``batch_size / n``).
        batch_size: expected Poisson batch size.
        epochs: planned epochs (noise calibration; the ledger stops training at ``target_epsilon``).
        l2_norm_clip: per-example gradient bound ``C``.
        noise_multiplier: σ; when None it is calibrated so ``epochs`` reach ``target_epsilon``.
        target_epsilon: the budget (required when ``noise_multiplier`` is None; a hard stop otherwise).
        delta: δ (default: the largest power of ten below ``1/n``).
        accountant: ``pld`` or ``rdp`` (dp-accounting).
        clipping_mode: ``auto``, ``ghost`` or ``vectorized``.
        noise_seed: SECRET seed of the noise and sampling (default: drawn from ``secrets``); whoever knows it
            can subtract the noise.

    Returns:
        :class:`PrivateTraining` with ``model``, ``ledger`` and ``dataset(x, y, ...)``.

    Raises:
        IncompatibleModelError: a layer mixes examples (BatchNorm) or a batch-level term is attached.
        ConfigError: neither ``noise_multiplier`` nor ``target_epsilon``, or bad sizes.
    """
    problems = []
    if num_examples is None or int(num_examples) < 2:
        problems.append(("num_examples", num_examples, "DP-SGD needs at least two training rows"))
    if batch_size is None or int(batch_size) < 1 or (num_examples and int(batch_size) > int(num_examples)):
        problems.append(("batch_size", batch_size, "must be between 1 and num_examples"))
    if epochs is None or int(epochs) < 1:
        problems.append(("epochs", epochs, "must be at least 1"))
    if noise_multiplier is None and target_epsilon is None:
        problems.append(("noise_multiplier", None, "give noise_multiplier or target_epsilon"))
    if l2_norm_clip is None or l2_norm_clip <= 0:
        problems.append(("l2_norm_clip", l2_norm_clip, "must be > 0"))
    if problems:
        raise ConfigError(problems)
    if not isinstance(model, ResponsibleModel):
        model = ResponsibleModel(model)
    clipping.check_model(model.core)
    clipping.check_no_batch_terms(model)
    n, batch = int(num_examples), int(batch_size)
    q = batch / n
    spe = steps_per_epoch(n, batch)
    delta = accounting.default_delta(n) if delta is None else float(delta)
    if noise_multiplier is None:
        noise_multiplier = accounting.calibrate_noise(float(target_epsilon), delta, q, spe * int(epochs), accountant)
    # ghost where exact (repeated calls of a layer included: tfresp.privacy.ghost sums them before the norm)
    mode, reason = clipping.select_clipping(model, clipping_mode)
    if noise_seed is None:  # multi-worker: one secret for all workers, or each would Poisson-sample its own rows
        from tfresp.distribute import shared_secret

        strategy = tf.distribute.get_strategy() if tf.distribute.has_strategy() else getattr(
            model.core, "distribute_strategy", None)
        shared = shared_secret(strategy) if strategy is not None else None
        secret = shared if shared is not None else secrets.randbits(62)
    else:
        secret = int(noise_seed)
    seed_var = tf.Variable(secret, dtype=tf.int64, trainable=False, name="dp_noise_seed")
    ledger = PrivacyLedger(accounting.PrivacyAccountant(accountant), noise_multiplier, q, delta, target_epsilon,
                           noise_seed=seed_var)
    gradient = clipping.make_gradient_fn(mode, l2_norm_clip, noise_multiplier, expected_batch_size=q * n,
                                         seed=seed_var)
    model.gradient_fn = _guard(gradient, mode)
    return PrivateTraining(model=model, ledger=ledger, noise_multiplier=float(noise_multiplier), sample_rate=q,
                           delta=delta, steps_per_epoch=spe, num_examples=n, clipping=mode, clipping_reason=reason,
                           _seed=secret ^ 0x5EED)
