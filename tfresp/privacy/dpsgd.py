"""``DPSGD``: the one DP-SGD mechanism behind :func:`tfresp.make_private` and the ``privacy:`` concern.

DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy"): every step clips each example's gradient
to L2 norm ``C``, sums, adds ``N(0, σ²C²I)`` and divides by the expected batch size. The guarantee rests on
things the Keras loop does not know about, so this object owns all of them:

* the **sampler** (:meth:`DPSGD.dataset`): Poisson sampling at rate ``q`` (or a secret shuffle), with fresh
  secret randomness for every call and every epoch; every batch carries a draw tag that the training step
  checks, so a foreign dataset (``model.fit(x, y)``, the user's own ``tf.data``) is refused when the step is
  traced and a replayed batch (``.cache()``, a stored list of batches) is refused when it arrives;
* the **noise counter** (``DPSGD.step``, an int64 variable checkpointed with the ledger state): the noise of
  step ``t`` is ``stateless_normal(seed, t)``, never keyed on ``optimizer.iterations`` (a recompile or a new
  optimizer resets those to 0 and would replay the noise);
* the **accounting**: the training step advances ``step`` itself; :attr:`PrivacyLedger.epsilon` reads it, so
  forgetting the ledger callback cannot make ε read 0, and a step past the budget cap (``max_steps``, a
  variable read inside the step) applies no update and releases nothing, with ``steps_per_execution > 1`` too;
* the **admission** of the model: a ``train_step`` other than tfresp's (a subclass, or a plain ``keras.Model``
  whose own step would be replaced) is refused, and the traced step must call the DP gradient.

Static shapes (``static_shapes=True``; XLA/TPU): each Poisson batch is truncated to ``batch_max`` rows and
padded to exactly ``batch_max`` with zero-weight dummy rows (``dp_mask = 0``: their per-example loss, hence
gradient, is exactly 0, so they add nothing to the clipped sum; the noise std stays ``σC / (q·n)``). So that
the step compiles once. Accounting of the truncation (Chua et al., NeurIPS 2024, "Scalable DP-SGD: Shuffling
vs. Poisson Subsampling", use the same truncate-and-pad scheme): couple the truncated run ``M'`` with the
untruncated Poisson run ``M`` on the same randomness; they differ only on the event that some step's Poisson
batch exceeds ``batch_max``, of probability at most ``T·p`` with ``p = P[Binomial(n + 1, q) > batch_max]`` (for
either neighbouring data set). For any output set ``S``:
``P[M'(D) ∈ S] ≤ P[M(D) ∈ S] + T·p ≤ e^ε P[M(D') ∈ S] + δ + T·p ≤ e^ε P[M'(D') ∈ S] + δ + (1 + e^ε)·T·p``.
So if ``M`` is (ε, δ)-DP, ``M'`` is (ε, δ + (1 + e^ε)·T·p)-DP. A share (1%) of the run's δ is reserved for that
term, ε is composed at the remaining δ, and ``batch_max`` is the smallest size whose term fits the reserve at
the largest ε and step count the run may reach (the step cap enforces that bound).

Example:
    >>> dp = DPSGD(num_examples=len(y), batch_size=64, epochs=3, l2_norm_clip=1.0, target_epsilon=3.0)
    >>> model = dp.attach(core)                       # a ResponsibleModel with the DP gradient transform
    >>> model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    >>> model.fit(dp.dataset(x, y), epochs=3)          # the ledger is attached by fit; dp.ledger.epsilon <= 3
"""
from __future__ import annotations

import hashlib
import itertools
import math
import secrets as _secrets
from typing import Optional

import numpy as np
import tensorflow as tf
from scipy import stats

from tfresp.data.stream import row_gather
from tfresp.errors import BudgetExhaustedError, ConfigError, DataError, IncompatibleModelError
from tfresp.privacy import accounting, admission
from tfresp.privacy.ghost import all_layers
from tfresp.privacy.sampling import poisson_indices
from tfresp.run.training import steps_per_epoch

#: extras keys of every batch the DP dataset yields (per row): 1/0 real/dummy row, and the draw tag
MASK_KEY = "dp_mask"
TAG_KEY = "dp_draw"
#: share of the run's δ reserved for the truncation of static-shape Poisson batches
TRUNCATION_DELTA_SHARE = 0.01
#: without a target ε, static shapes cap the run at this multiple of the planned steps (the truncation bound)
TRUNCATION_STEP_MARGIN = 10
_NO_CAP = 2 ** 62

#: What DP-SGD needs from the data; said whenever a tf.data.Dataset is offered under DP.
DATASET_REFUSAL = (
    "DP-SGD needs random access to the training rows: each step draws a Poisson sample (every row joins "
    "independently with probability q), which is what the accountant's ε assumes, and each row must be one "
    "record for the add/remove-one-row guarantee. A tf.data.Dataset is a stream: tfresp can neither sample it "
    "that way nor see whether its pipeline repeats, augments or mixes rows")

FOREIGN_BATCH = (
    "`x`: this model trains with DP-SGD, but the batch was not drawn by its DP dataset. The privacy accounting "
    "assumes every batch is a fresh secret Poisson sample (or a secret shuffle) drawn by tfresp; arrays passed to "
    "fit (fixed-size, Keras-shuffled batches) or your own tf.data pipeline give no such guarantee, and booking "
    "them as Poisson would understate ε. Received: a batch without the `{tag}`/`{mask}` extras. Remedy: "
    "model.fit(private.dataset(x, y, sample_weight=...), epochs=...)")


def _derive(secret: int, *labels: int) -> int:
    """A 62-bit value keyed on ``secret`` (blake2b): independent seeds for noise, sampling and each dataset."""
    msg = b"".join(int(v).to_bytes(8, "big", signed=True) for v in labels)
    return int.from_bytes(hashlib.blake2b(msg, digest_size=8, key=int(secret).to_bytes(8, "big")).digest(),
                          "big") >> 2


def truncation_tail(num_examples: int, sample_rate: float, batch_max: int) -> float:
    """``P[Binomial(n + 1, q) > batch_max]``: the chance one Poisson step (either neighbour) exceeds ``batch_max``."""
    return float(stats.binom.sf(int(batch_max), int(num_examples) + 1, float(sample_rate)))


def choose_batch_max(num_examples: int, sample_rate: float, steps: int, epsilon: float, reserve: float) -> int:
    """The smallest ``batch_max`` with ``(1 + e^ε)·steps·P[Binomial(n + 1, q) > batch_max] <= reserve``."""
    limit = reserve / ((1.0 + math.exp(min(epsilon, 700.0))) * max(int(steps), 1))
    n1 = int(num_examples) + 1
    b = int(stats.binom.isf(limit, n1, sample_rate))
    while b > 0 and stats.binom.sf(b - 1, n1, sample_rate) <= limit:
        b -= 1
    while stats.binom.sf(b, n1, sample_rate) > limit:
        b += 1
    return max(1, min(b, n1))


def _nested_has_train_step(model) -> Optional[str]:
    """The class whose own ``train_step`` differs from tfresp's/Keras' (None when it is the standard one)."""
    import tf_keras as keras

    from tfresp.models.base import ResponsibleModel

    cls = type(model)
    expected = ResponsibleModel.train_step if isinstance(model, ResponsibleModel) else keras.Model.train_step
    if getattr(cls, "train_step", None) is not expected:
        owner = next((k for k in cls.__mro__ if "train_step" in vars(k)), cls)
        return f"{owner.__module__}.{owner.__qualname__}"
    return None


def _trainable_state(core):
    """``(ids of the trainable variables, {id(layer): layer.trainable})`` of ``core``: what admission saw."""
    return ({id(v) for v in core.trainable_variables},
            {id(layer): bool(layer.trainable) for layer in all_layers(core)})


class DPSGD:
    """DP-SGD with Poisson sampling, secret seeds, its own noise counter and a hard budget stop.

    Usable on its own (no builder, no run context): a federated site can build one per client for
    example-level DP-SGD.

    Args:
        num_examples: training rows ``n``.
        batch_size: expected batch size (Poisson: ``q = batch_size / n``).
        epochs: planned epochs (noise calibration, truncation bound).
        l2_norm_clip: per-example gradient bound ``C``.
        noise_multiplier: σ (> 0); None calibrates it so ``epochs`` reach ``target_epsilon``.
        target_epsilon: the budget: required without ``noise_multiplier``; with it, a hard stop.
        delta: the run's δ (default: :func:`accounting.default_delta`, or the budget's).
        accountant: ``pld`` or ``rdp``.
        sampling: ``poisson`` or ``shuffle`` (secret fixed-size order, no-amplification accounting).
        clipping_mode: ``auto``, ``ghost`` or ``vectorized`` (chosen when the model is attached).
        noise_seed: SECRET root seed of the noise and sampling (default: from ``secrets``/the budget).
        budget: the run's :class:`~tfresp.privacy.budget.PrivacyBudget`, whose other spends are composed.
        static_shapes: truncate and pad Poisson batches to ``batch_max`` (XLA), accounted as above.
        secrets_state: other secrets kept with the checkpointed state (e.g. the canary seed).
        strategy: the tf.distribute strategy (multi-worker: every worker derives the same secret).
        synthetic_rows: at most this many synthetic rows (audit canaries) are added to the data by the caller
            (they count in the truncation bound; they are not training rows).
        gradient_canaries: white-box gradient canaries for the audit (:class:`~tfresp.privacy.canary.
            GradientCanaries`; 0: none). They never touch the model.

    Attributes:
        model, ledger, noise_multiplier, sample_rate, delta, steps_per_epoch, num_examples, clipping,
        clipping_reason, batch_max, truncation: the mechanism as built.
    """

    def __init__(self, *, num_examples: int, batch_size: int, epochs: int = 1, l2_norm_clip: float = 1.0,
                 noise_multiplier: Optional[float] = None, target_epsilon: Optional[float] = None,
                 delta: Optional[float] = None, accountant: str = "pld", sampling: str = "poisson",
                 clipping_mode: str = "auto", noise_seed: Optional[int] = None, budget=None,
                 static_shapes: bool = False, secrets_state: Optional[dict] = None, strategy=None,
                 synthetic_rows: int = 0, gradient_canaries: int = 0):
        problems = []
        if num_examples is None or int(num_examples) < 2:
            problems.append(("num_examples", num_examples, "DP-SGD needs at least two training rows"))
        if batch_size is None or int(batch_size) < 1 or (num_examples and int(batch_size) > int(num_examples)):
            problems.append(("batch_size", batch_size, "must be between 1 and num_examples"))
        if epochs is None or int(epochs) < 1:
            problems.append(("epochs", epochs, "must be at least 1"))
        if noise_multiplier is None and target_epsilon is None:
            problems.append(("noise_multiplier", None, "give noise_multiplier or target_epsilon"))
        if noise_multiplier is not None and not float(noise_multiplier) > 0:
            problems.append(("noise_multiplier", noise_multiplier, "must be > 0: without noise DP-SGD is not "
                             "differentially private (ε = ∞)"))
        if l2_norm_clip is None or not float(l2_norm_clip) > 0:
            problems.append(("l2_norm_clip", l2_norm_clip, "must be > 0"))
        if sampling not in ("poisson", "shuffle"):
            problems.append(("sampling", sampling, "'poisson' or 'shuffle'"))
        if static_shapes and sampling != "poisson":
            problems.append(("static_shapes", static_shapes, "only for Poisson sampling (shuffled batches "
                             "already have a fixed size)"))
        if problems:
            raise ConfigError(problems)
        n, batch = int(num_examples), int(batch_size)
        self.num_examples, self.batch_size, self.epochs = n, batch, int(epochs)
        self.l2_norm_clip = float(l2_norm_clip)
        self.sampling, self.accountant_kind = sampling, accountant
        self.sample_rate = min(1.0, batch / n)
        self.steps_per_epoch = steps_per_epoch(n, batch)
        self.planned_steps = self.steps_per_epoch * self.epochs
        self.budget = budget
        self.target_epsilon = None if target_epsilon is None else float(target_epsilon)
        self.clipping_mode_requested = clipping_mode
        self.static_shapes = bool(static_shapes)
        if budget is not None:
            budget.resolve_delta(n)
            run_delta = budget.accounting_delta  # the run's δ less earlier spends' δ terms
            self.run_delta = budget.delta
        else:
            run_delta = accounting.default_delta(n) if delta is None else float(delta)
            self.run_delta = run_delta
        self.truncation_reserve = run_delta * TRUNCATION_DELTA_SHARE if self.static_shapes else 0.0
        #: δ at which ε is composed (the run's δ less the truncation reserve and earlier spends' δ terms)
        self.delta = run_delta - self.truncation_reserve
        base = [sp.event for sp in budget.spends] if budget is not None else []
        others = [sp.source for sp in budget.spends] if budget is not None else []
        kw = dict(sampling=sampling, steps_per_epoch=self.steps_per_epoch, base_events=base)
        q = self.sample_rate
        if noise_multiplier is None:
            sigma = accounting.calibrate_noise(self.target_epsilon, self.delta, q, self.planned_steps, accountant,
                                               **kw)
            self.noise_source = f"calibrated so that the run's composed ε <= {self.target_epsilon:g}" + (
                f" (DP-SGD composed with {others})" if others else "")
        else:
            sigma, self.noise_source = float(noise_multiplier), "given"
        self.noise_multiplier = float(sigma)
        cap = _NO_CAP
        if self.target_epsilon is not None:
            cap = accounting.max_steps_within(self.target_epsilon, sigma, q, self.delta, accountant,
                                              max(self.planned_steps * 100, 1000), **kw)
            if cap == 0:
                raise BudgetExhaustedError(
                    f"Invalid value for argument `privacy.noise_multiplier`. Received: noise_multiplier={sigma}. "
                    f"Even one step exceeds target_epsilon={self.target_epsilon} at delta={self.delta:g} with "
                    f"q={q:.4g}" + (f" composed with {others}" if others else "")
                    + "; raise the noise multiplier or the budget")
        self.synthetic_rows = int(synthetic_rows)
        self.batch_max, self.truncation = None, None
        if self.static_shapes:
            steps_bound = cap if cap < _NO_CAP else TRUNCATION_STEP_MARGIN * self.planned_steps
            cap = min(cap, steps_bound)
            eps_bound = accounting.compute_epsilon(sigma, q, steps_bound, self.delta, accountant, **kw)
            rows = n + self.synthetic_rows
            self.batch_max = choose_batch_max(rows, q, steps_bound, eps_bound, self.truncation_reserve)
            self.truncation = {"batch_max": self.batch_max,
                               "tail_probability": truncation_tail(rows, q, self.batch_max),
                               "max_steps": int(steps_bound), "epsilon_bound": eps_bound,
                               "delta": self.truncation_reserve}
        # -- secrets and state --------------------------------------------------------------------------
        if noise_seed is not None:
            secret = int(noise_seed)
        elif budget is not None:
            secret = budget.secret_seed()
        else:  # multi-worker: one secret for all workers, or each would Poisson-sample its own rows
            from tfresp.run.distribute import shared_secret

            shared = shared_secret(strategy) if strategy is not None else None
            secret = shared if shared is not None else _secrets.randbits(62)
        self._make_variables(secret, cap)
        self.canaries = None
        if gradient_canaries:
            from tfresp.privacy.canary import GradientCanaries

            self.canaries = GradientCanaries(gradient_canaries, self.noise_seed, self.sample_rate)
        self.datasets_issued = 0
        self._next_tag = 1
        self.model = None
        self.clipping, self.clipping_reason = None, ""
        self._traced_gradient = False
        from tfresp.privacy.ledger import PrivacyLedger

        self.ledger = PrivacyLedger(accounting.PrivacyAccountant(accountant), sigma, q, self.delta,
                                    self.target_epsilon, noise_seed=self.noise_seed, budget=budget,
                                    sampling=sampling, steps_per_epoch=self.steps_per_epoch,
                                    secrets_state=secrets_state, dp=self)

    def _make_variables(self, secret: int, cap: int) -> None:
        kw = dict(dtype=tf.int64, trainable=False, synchronization=tf.VariableSynchronization.ON_WRITE,
                  aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        #: SECRET root seed (checkpointed in the private working directory only, never reported)
        self.noise_seed = tf.Variable(secret, name="dp_noise_seed", **kw)
        #: DP-SGD steps taken (= noise draws released); the noise of step t is keyed on (seed, t)
        self.step = tf.Variable(0, name="dp_step", **kw)
        #: the step count the budget allows; a step at or past it applies nothing
        self.max_steps = tf.Variable(int(cap), name="dp_max_steps", **kw)
        #: the largest draw tag consumed (replayed batches carry a tag <= it)
        self.last_tag = tf.Variable(0, name="dp_last_tag", **kw)
        #: batches refused as replays
        self.replayed = tf.Variable(0, name="dp_replayed", **kw)

    # -- the model ----------------------------------------------------------------------------------
    def attach(self, model):
        """Admit ``model`` (a keras.Model or ResponsibleModel) and give it the DP gradient transform.

        Raises:
            IncompatibleModelError: the model has its own ``train_step`` (it would bypass or lose the DP step),
                a batch-level term, or a layer DP-SGD cannot clip (see ``clipping.check_model``).
        """
        from tfresp.models.base import ResponsibleModel
        from tfresp.privacy import clipping

        own = _nested_has_train_step(model)
        if own is None and isinstance(model, ResponsibleModel):
            own = _nested_has_train_step(model.core)
        if own is not None:
            raise IncompatibleModelError(
                f"`model`: {own} defines its own train_step. Under DP-SGD the training step must be tfresp's: it "
                "clips each example's gradient, adds the noise, advances the DP step counter and stops at the "
                "budget; a custom step would either bypass all of that (no noise while ε is reported) or be "
                "silently replaced by tfresp's. Received: a model whose class overrides train_step. Remedy: move "
                "the custom logic into loss terms (tfresp.ResponsibleModel(core, terms=[...])) or train without DP")
        if not isinstance(model, ResponsibleModel):
            model = ResponsibleModel(model)
        clipping.check_model(model)  # the model: its terms and input transform are traced with the core
        clipping.check_no_batch_terms(model)
        mode, reason = clipping.select_clipping(model, self.clipping_mode_requested, batch_rows=self.largest_batch())
        model.gradient_fn = self.gradient_fn(mode)
        self._admitted = _trainable_state(model.core)
        self.model, self.clipping, self.clipping_reason = model, mode, reason
        return model

    def gradient_fn(self, mode: str):
        """The DP gradient transform (``model.gradient_fn``) with this object's seed, counter and clip."""
        from tfresp.privacy import clipping

        expected = self.sample_rate * self.num_examples if self.sampling == "poisson" else None
        inner = clipping.make_gradient_fn(mode, self.l2_norm_clip, self.noise_multiplier,
                                          expected_batch_size=expected, seed=self.noise_seed, counter=self.step,
                                          canaries=self.canaries)
        dp = self

        def guarded(model, x, y, extras):
            clipping.check_no_batch_terms(model)
            if mode == "ghost" and (model.per_example_losses or model.input_transform is not None):
                raise IncompatibleModelError(
                    "`terms`: a term or input transform was added after make_private chose ghost clipping (which "
                    "only covers the plain loss). Remedy: attach every term before calling make_private")
            dp._traced_gradient = True
            return inner(model, x, y, extras)

        guarded.mode = mode
        guarded.dp = self
        return guarded

    def train_step(self, model, x, y, extras):
        """The DP training step (called by ``ResponsibleModel.train_step``): admit the batch, then one step.

        The step runs only on a fresh batch of this object's dataset while ``step < max_steps``; otherwise it
        applies no update, draws no noise and leaves the counter (hence ε) unchanged.
        """
        if not isinstance(extras, dict) or TAG_KEY not in extras or MASK_KEY not in extras:
            raise DataError(FOREIGN_BATCH.format(tag=TAG_KEY, mask=MASK_KEY))
        extras = dict(extras)
        tag = tf.cast(extras.pop(TAG_KEY), tf.int64)
        mask = tf.cast(extras[MASK_KEY], tf.float32)
        sw = extras.get("sample_weight")
        extras["sample_weight"] = mask if sw is None else tf.cast(tf.reshape(sw, tf.shape(mask)), tf.float32) * mask
        newest = tf.reduce_max(tf.concat([tag, tf.zeros([1], tf.int64)], 0))
        fresh = tf.logical_or(tf.equal(tf.size(tag), 0), newest > self.last_tag)
        allowed = self.step < self.max_steps
        run = tf.logical_and(fresh, allowed)
        self._traced_gradient = False

        def do():
            loss, logits = model.gradient_step(x, y, extras)
            model.loss_tracker.update_state(loss)
            if logits is not None:
                model._update_metrics(y, logits, extras)
            self.last_tag.assign(tf.maximum(self.last_tag, newest))
            return tf.constant(True)

        def skip():
            self.replayed.assign_add(tf.cast(tf.logical_and(allowed, tf.logical_not(fresh)), tf.int64))
            return tf.constant(False)

        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            # merge_call (the optimizer's all-reduce) cannot run inside a cond branch: refuse a replay or a step
            # past the cap by raising instead (checked on the host between steps by the ledger)
            do()
        else:
            tf.cond(run, do, skip)
        if not self._traced_gradient:
            raise IncompatibleModelError(
                "`model`: the traced training step never called the DP gradient transform (a gradient_step or "
                "loss method was overridden to compute gradients another way), so no example would be clipped or "
                "noised. Remedy: keep tfresp's gradient_step, or train without DP")
        return {m.name: m.result() for m in model.metrics}

    # -- data ---------------------------------------------------------------------------------------
    def dataset(self, x, y, sample_weight=None, extras: Optional[dict] = None, *, resume: bool = False,
                synthetic_rows: int = 0):
        """Batches of the ``num_examples`` rows for ``model.fit``: each a fresh secret Poisson sample.

        Every call (and every epoch of each returned dataset) draws new secret randomness, so two calls never
        replay the same batches. With ``static_shapes`` every batch has exactly ``batch_max`` rows.

        Args:
            x, y: arrays (or a dict of arrays for ``x``) with ``num_examples`` rows.
            sample_weight: optional per-row weights (inside clipping).
            extras: optional dict of per-row arrays handed to the loss terms (e.g. ``{"fair_group": g}``).
            resume: continue the stream of the last dataset (a run resumed from a checkpoint skips the batches
                it consumed) instead of starting a new one.
            synthetic_rows: how many rows of ``x``/``y`` are synthetic audit canaries appended after the
                ``num_examples`` training rows (at most the ``synthetic_rows`` given at construction).
        """
        if isinstance(x, tf.data.Dataset):
            raise DataError(f"Invalid value for argument `x`: a tf.data.Dataset cannot be used for DP-SGD. "
                            f"{DATASET_REFUSAL}. Received: x={type(x).__name__}. Remedy: pass the rows as arrays "
                            "(x, y) that hold one record per row")
        n = len(y)
        if n != self.num_examples + int(synthetic_rows) or int(synthetic_rows) > self.synthetic_rows:
            raise DataError(f"Invalid value for argument `y`: {n} rows, but the DP-SGD mechanism was built for "
                            f"num_examples={self.num_examples} (the sampling rate and ε depend on it). Remedy: "
                            "build it with num_examples=len(y)")
        extras = dict(extras or {})
        if sample_weight is not None:
            extras["sample_weight"] = np.asarray(sample_weight, np.float32)
        extras.setdefault("sample_weight", np.ones(n, np.float32))
        stream = self.datasets_issued - 1 if (resume and self.datasets_issued > 0) else self.datasets_issued
        self.datasets_issued = max(self.datasets_issued, stream + 1)
        seed = _derive(int(self.noise_seed.numpy()), 0x5EED, stream)
        # the rows of each batch are gathered from the arrays on the host (no tensor copy of the whole arrays;
        # the draw of the indices below is unchanged: secret seeds, TF stateless randomness)
        gather = row_gather((x, y, extras))
        if self.sampling == "poisson":
            ds = self._poisson(gather, n, seed)
        else:
            ds = self._shuffled(gather, n, seed)
        ds = ds.apply(tf.data.experimental.assert_cardinality(self.steps_per_epoch))
        return ds.prefetch(tf.data.AUTOTUNE)

    def _tags(self) -> tf.data.Dataset:
        """Increasing draw tags: a Python counter of this object, so re-iterations continue it."""

        def gen():
            for _ in itertools.count():
                tag = self._next_tag
                self._next_tag += 1
                yield np.int64(tag)

        return tf.data.Dataset.from_generator(gen, output_signature=tf.TensorSpec([], tf.int64))

    def _poisson(self, gather, n: int, seed: int) -> tf.data.Dataset:
        q = float(self.sample_rate)
        bmax = self.batch_max

        @tf.autograph.experimental.do_not_convert
        def draw(s, tag):
            idx = poisson_indices(n, q, tf.stack([s, tf.constant(seed, tf.int64)]))
            if bmax is not None:  # truncate (accounted: see the module docstring) and pad with dummy rows
                idx = idx[:bmax]
                k = tf.shape(idx)[0]
                mask = tf.concat([tf.ones([k]), tf.zeros([bmax - k])], 0)
                idx = tf.concat([idx, tf.zeros([bmax - k], tf.int64)], 0)
                idx = tf.ensure_shape(idx, [bmax])
                mask = tf.ensure_shape(mask, [bmax])
            else:
                mask = tf.ones(tf.shape(idx)[:1])
            x, y, extras = gather(idx)
            extras = dict(extras)
            extras[MASK_KEY] = mask
            extras[TAG_KEY] = tf.fill(tf.shape(mask), tag)
            return x, y, extras

        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(self.steps_per_epoch)
        return tf.data.Dataset.zip((seeds, self._tags())).map(draw)

    def _shuffled(self, gather, n: int, seed: int) -> tf.data.Dataset:
        batch = self.batch_size

        def add(idx, tag):
            x, y, extras = gather(idx)
            extras = dict(extras)
            size = tf.shape(y)[:1]
            extras[MASK_KEY] = tf.ones(size)
            extras[TAG_KEY] = tf.fill(size, tag)
            return x, y, extras

        # a shuffle of the row indices: the same secret order as shuffling the rows themselves (the order depends
        # only on the seed and n), without a tensor copy of the rows
        rows = tf.data.Dataset.range(n).shuffle(n, seed=seed % (2 ** 31), reshuffle_each_iteration=True).batch(batch)
        return tf.data.Dataset.zip((rows, self._tags())).map(add)

    # -- accounting -----------------------------------------------------------------------------------
    @property
    def steps(self) -> int:
        return int(self.step.numpy())

    @property
    def epsilon(self) -> float:
        """The run's ε(δ) after the steps taken so far (read from the step counter)."""
        return self.ledger.epsilon

    def spend_params(self, steps: Optional[int] = None) -> dict:
        """The DP-SGD spend's parameters (what ``report --check`` re-derives ε from)."""
        params = {"noise_multiplier": self.noise_multiplier, "sampling_rate": self.sample_rate,
                  "steps": int(self.steps if steps is None else steps), "sampling": self.sampling,
                  "steps_per_epoch": self.steps_per_epoch, "l2_norm_clip": self.l2_norm_clip}
        if self.truncation is not None:
            # the reserved δ term of truncated Poisson batches: subtracted from the run's δ before composing ε
            params["delta"] = self.truncation_reserve
            params["batch_max"] = self.batch_max
            params["truncation_tail_probability"] = self.truncation["tail_probability"]
            params["truncation_max_steps"] = self.truncation["max_steps"]
        return params

    # -- state (checkpointed with the ledger) ---------------------------------------------------------
    def get_state(self) -> dict:
        state = {"dp_step": self.steps, "dp_last_tag": int(self.last_tag.numpy()),
                 "dp_datasets_issued": self.datasets_issued}
        if self.canaries is not None:
            state.update(self.canaries.get_state())
        return state

    def set_state(self, state: dict) -> None:
        if "dp_step" in state:
            self.step.assign(int(state["dp_step"]))
        if "dp_last_tag" in state:
            self.last_tag.assign(int(state["dp_last_tag"]))
            self._next_tag = int(state["dp_last_tag"]) + 1
        if "dp_datasets_issued" in state:
            self.datasets_issued = int(state["dp_datasets_issued"])
        if self.canaries is not None:
            self.canaries.set_state(state)

    def largest_batch(self) -> int:
        """The largest batch a step draws with probability above 1e-9 (the admission probes ghost clipping there)."""
        if self.batch_max is not None:
            return int(self.batch_max)
        if self.sampling != "poisson":
            return self.batch_size
        rows = self.num_examples + self.synthetic_rows
        return int(min(rows, stats.binom.isf(1e-9, rows, self.sample_rate)))

    def check_model(self, model) -> None:
        """Refuse (at fit time) a model whose class overrides ``train_step`` (see :meth:`attach`), or whose layers
        were made trainable after admission (a BatchNormalization unfrozen after ``make_private`` would update its
        moving statistics from the private rows, outside the noise; a new trainable weight was never probed)."""
        admitted = getattr(self, "_admitted", None)
        core = getattr(model, "core", model)
        if admitted is not None and model is self.model:
            variables, layers = _trainable_state(core)
            grown = sorted({layer.name for layer in all_layers(core) if layers.get(id(layer)) and
                            not admitted[1].get(id(layer), False)}
                           | {v.name for v in core.trainable_variables if id(v) in variables - admitted[0]})
            if grown:
                raise IncompatibleModelError(
                    "`model`: layers or weights were added or made trainable after make_private admitted the model, "
                    "so they were never checked (a BatchNormalization unfrozen now would update its moving statistics "
                    "from the private rows, outside the noise; an add_loss added now escapes the probe). Received: "
                    f"newly trainable {grown}. Remedy: finish the model (layer.trainable, add_loss) before "
                    "make_private (or the privacy concern), then build a new one")
            probe = admission.probe_batch(core)
            added = admission.added_loss_problem(core, probe) if probe is not None and core.losses else None
            if added:
                raise IncompatibleModelError(f"`model`: after make_private admitted the model, {added}")
        own = _nested_has_train_step(model)
        if own is not None:
            raise IncompatibleModelError(
                f"`model`: {own} defines its own train_step, which bypasses tfresp's DP-SGD step (clipping, noise, "
                "the DP step counter and the budget stop). Remedy: use loss terms instead, or train without DP")
