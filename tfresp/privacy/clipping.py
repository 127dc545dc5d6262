"""Per-example clipping + Gaussian noise as a :class:`~tfresp.models.base.ResponsibleModel` ``gradient_fn``.

DP-SGD (Abadi et al. 2016): each example's gradient ``g_i`` is clipped to L2 norm ``C``
(``g_i · min(1, C/‖g_i‖)``), the clipped gradients are summed, Gaussian noise ``N(0, σ²C²I)`` is added once
to the sum, and the result is divided by the expected batch size ``q·n`` (Poisson sampling; dividing by the
realised batch size would leak it) or by the fixed batch size (shuffling).

Two ways to get the clipped sum, with the same result:

* ``vectorized``: ``tf.vectorized_map`` over examples of :meth:`ResponsibleModel.per_example_loss`, so fairness and
  adversarial per-example terms and the input transform are *inside* clipping. Works for any model; memory
  grows with ``batch × parameters``.
* ``ghost``: per-example norms from layer inputs and output gradients (:mod:`tfresp.privacy.ghost`, exact
  for layers called several times; Li et al. 2022, "Large Language Models Can Be Strong Differentially Private
  Learners") and the clipped sum from the same tensors (book-keeping, Bu et al. 2023): one backward pass. Only when
  every trainable weight belongs to a supported layer, the loss is the plain weighted cross-entropy, and the norms
  equal the per-example loop on a probe batch (:mod:`tfresp.privacy.admission`).
* ``loop``: as ``vectorized`` but one example at a time (``tf.map_fn``), for models whose forward pass has a
  ``tf.while_loop`` (LSTM, GRU), which ``tf.vectorized_map`` cannot differentiate per example.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfresp.errors import IncompatibleModelError
from tfresp.models.base import is_rowwise
from tfresp.privacy import admission, ghost

#: Layers whose training-time output mixes examples of a batch: per-example clipping cannot bound them.
#: The base class covers BatchNormalization (v1 and v2) and SyncBatchNormalization.
MIXING_LAYERS = (ghost.BATCH_NORM_BASE, keras.layers.BatchNormalization)
#: Stochastic layers; ghost clipping is skipped for them (kept simple: vectorized clipping handles them).
STOCHASTIC_LAYERS = (keras.layers.Dropout, keras.layers.GaussianNoise, keras.layers.GaussianDropout,
                     keras.layers.AlphaDropout)


def _flat_layers(model) -> list:
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.extend(_flat_layers(layer))
        out.append(layer)
    return out


def check_model(model: keras.Model) -> None:
    """Raise :class:`IncompatibleModelError` listing every layer DP-SGD cannot handle, each with a remedy.

    Refused: batch-mixing layers (BatchNormalization, SyncBatchNormalization, any subclass) unless frozen,
    activity regularizers, and what the probes of :mod:`tfresp.privacy.admission` measure: any variable the traced
    training step writes (gated memories and counters included) and any example that changes another's output or
    gradient.

    Args:
        model: the core, or a ResponsibleModel (its per-example terms and input transform are traced too).
    """
    core = admission._core(model)
    problems = []
    layers = [l for l in ghost.all_layers(core) if not isinstance(l, keras.Model)] + _flat_layers(core)
    mixing = set()
    for layer in {id(l): l for l in layers}.values():
        if isinstance(layer, MIXING_LAYERS) and layer.trainable:
            mixing.add(layer.name)
            problems.append(f"layer {layer.name!r} ({type(layer).__name__}) mixes examples within a batch, so "
                            "per-example clipping cannot bound one example's influence; remedy: replace it with "
                            "LayerNormalization (or freeze it: layer.trainable = False)")
        if getattr(layer, "activity_regularizer", None) is not None:
            problems.append(f"layer {layer.name!r} has an activity_regularizer (a batch-level, data-dependent "
                            "loss that escapes clipping); remedy: remove it or use a weight regularizer")
    outputs = len(core.outputs) if ghost.is_functional(core) and core.outputs else 1
    if outputs > 1:
        problems.append(f"the core has {outputs} outputs, but the per-example loss (and its clipping) takes one "
                        "output tensor; remedy: concatenate the heads into one output (keras.layers.Concatenate) "
                        "and split it in the loss")
    problems += admission.state_problems(model, exclude=mixing)
    if problems:
        raise IncompatibleModelError("`model`: the model cannot be trained with DP-SGD: " + "; ".join(problems))


def check_no_batch_terms(model, sources: Optional[List[str]] = None) -> None:
    """The one rule for batch-level loss terms under DP-SGD: refused (``make_private``, the privacy concern and the
    traced private step all ask here).

    A batch term depends on several examples at once, so per-example clipping cannot bound one example's
    influence on it. ``sources``: the concerns that contributed such terms (the run names them).
    """
    if model.batch_losses or sources:
        who = f" (added by {sources})" if sources else ""
        raise IncompatibleModelError(
            f"`terms`: {len(model.batch_losses) or len(sources)} batch-level loss term(s){who} depend on several "
            "examples at once, so per-example clipping cannot bound one example's influence on them and DP-SGD "
            "would not be private. Remedy: use the per-example form of the term (e.g. a per-example fairness "
            "penalty) or train without DP")


def ghost_blockers(core: keras.Model) -> List[str]:
    """Why ghost clipping would not be exact for ``core`` (empty when it is)."""
    if not ghost.is_functional(core):
        return [f"the core model {core.name!r} is a subclassed model (its call may use weights outside layer "
                "calls, which ghost norms cannot see); remedy: build it with the functional API"]
    blockers, layers = [], ghost.all_layers(core)
    nested = sorted(l.name for l in layers if isinstance(l, keras.Model) and not ghost.is_functional(l))
    if nested:
        blockers.append(f"subclassed nested models {nested}")
    owners = {}
    for layer in layers:
        if ghost._is_leaf(layer):
            for v in layer.trainable_weights:
                owners.setdefault(id(v), []).append(layer.name)
    unsupported = sorted({f"{l.name!r} ({type(l).__name__})" for l in layers
                          if not isinstance(l, keras.Model) and not ghost._is_leaf(l)
                          and (ghost.own_weights(l, trainable=True) or (l.trainable_weights and
                                                        not isinstance(l, ghost._CONTAINERS)))})
    if unsupported:
        blockers.append("trainable layers without a fast-norm rule: " + ", ".join(unsupported)
                        + f" (supported: {sorted(ghost.GHOST_LAYERS)})")
    shared = sorted({"/".join(o) for o in owners.values() if len(o) > 1})
    if shared:
        blockers.append(f"weights shared between layers {shared}")
    uncovered = sorted(v.name for v in core.trainable_variables if id(v) not in owners)
    if uncovered and not unsupported:
        blockers.append(f"trainable variables outside supported layers: {uncovered}")
    for layer in layers:
        if type(layer) is keras.layers.EinsumDense and layer.trainable_weights:
            why = ghost.einsum_problem(layer)
            if why:
                blockers.append(f"layer {layer.name!r} (EinsumDense): {why}")
    stochastic = sorted(l.name for l in _flat_layers(core) if isinstance(l, STOCHASTIC_LAYERS))
    if stochastic:
        blockers.append(f"stochastic layers {stochastic} (kept on the vectorized path)")
    return blockers


#: The most rows of the second independence probe (the run's largest likely batch; memory bound).
MAX_PROBE_ROWS = 4096


def select_clipping(model, requested: str = "auto", batch_rows: Optional[int] = None) -> Tuple[str, str]:
    """Choose ``ghost``, ``vectorized`` or ``loop`` clipping for ``model`` (a ResponsibleModel) and say why.

    Ghost is chosen only where it is exact: no static blocker (:func:`ghost_blockers`) and, measured on a probe
    batch, ghost per-example norms equal the per-example loop
    (:func:`tfresp.privacy.admission.ghost_exactness_problem`). Otherwise the per-example path: ``vectorized``
    (``tf.vectorized_map``), or ``loop`` (``tf.map_fn``, exact and slower) where the forward pass has a
    ``tf.while_loop`` (recurrent layers) whose gradient ``tf.vectorized_map`` cannot vectorise.

    Ghost clipping runs the forward pass on the whole batch, so it also needs that no example mixes into another
    at the run's batch size: with ``batch_rows`` (the largest batch the run is likely to draw, at most
    :data:`MAX_PROBE_ROWS`) the independence probe runs again at that size before ghost is chosen (a layer that
    mixes only above the 4-row probe's size is refused). The per-example paths compute each example's gradient
    on a batch of its own, where no mixing can cross examples.

    Returns:
        ``(mode, reason)``.

    Raises:
        IncompatibleModelError: ``ghost`` was requested but is not applicable (the message lists why), or ghost
            would be chosen and examples mix at ``batch_rows``.
    """
    blockers = ghost_blockers(model.core)
    if model.per_example_losses:
        blockers.append(f"{len(model.per_example_losses)} extra per-example loss term(s) (fairness/robustness) "
                        "depend on more than the logits")
    if model.input_transform is not None:
        blockers.append("an input transform (adversarial training) runs inside the per-example loss")
    if requested != "vectorized" and not blockers:
        inexact = admission.ghost_exactness_problem(model.core)
        if inexact:
            blockers.append(inexact)
    if requested != "vectorized" and not blockers:
        _check_mixing_at(model.core, batch_rows)
    if requested == "ghost":
        if blockers:
            raise IncompatibleModelError("`privacy.clipping`: ghost clipping is not possible: " + "; ".join(blockers)
                                         + ". Received: clipping='ghost'. Remedy: use privacy.clipping: "
                                         "vectorized (or auto)")
        return "ghost", "requested by privacy.clipping; ghost norms equal the per-example loop on a probe batch"
    if requested == "auto" and not blockers:
        return "ghost", "every trainable weight belongs to a layer with an exact fast per-example norm rule " \
                        "(repeated calls included), the loss is the plain per-example loss, and ghost norms " \
                        "equal the per-example loop on a probe batch"
    why = "requested by privacy.clipping" if requested == "vectorized" else \
        "ghost clipping not applicable: " + "; ".join(blockers)
    loop = admission.needs_loop(model)
    if loop:
        return "loop", f"{why}; {loop}"
    return "vectorized", why


def _check_mixing_at(core, batch_rows: Optional[int]) -> None:
    """Refuse ``core`` when examples mix in a probe batch of ``batch_rows`` rows (first and last row changed)."""
    rows = min(int(batch_rows or 0), MAX_PROBE_ROWS)
    if rows <= 4:  # the 4-row probe of check_model covered it
        return
    mixing = admission.independence_problem(core, admission.probe_batch(core, rows=rows), rows=(0, rows - 1))
    if mixing:
        raise IncompatibleModelError(
            f"`model`: the model cannot be trained with DP-SGD: {mixing} (at {rows} rows, the largest batch this run "
            "is likely to draw; the 4-row probe did not trigger it). Received: a model whose layers mix examples "
            "at the run's batch size. Remedy: remove the batch-level operation (use LayerNormalization for a "
            "normalisation)")


def _expand(t):
    return tf.expand_dims(t, 0)


def clipped_sum_vectorized(model, x, y, extras, l2_norm_clip: float, variables: Optional[List] = None):
    """Sum of per-example gradients of ``model.per_example_loss``, each clipped to ``l2_norm_clip``.

    Returns:
        ``(clipped_grad_sum, per_example_losses [B], logits [B, K], norms [B])``.
    """
    variables = list(variables if variables is not None else model.core.trainable_variables)
    extras = dict(extras) if isinstance(extras, dict) else {}

    def one(args):
        xi, yi, ei = args
        xi, yi, ei = tf.nest.map_structure(_expand, (xi, yi, ei))
        with tf.GradientTape() as tape:
            loss, logits = model.per_example_loss(xi, yi, ei, training=True)
            loss = tf.reduce_sum(loss)
        grads = [tf.convert_to_tensor(g) for g in  # embeddings give IndexedSlices
                 tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)]
        norm = tf.linalg.global_norm(grads)
        factor = l2_norm_clip / tf.maximum(norm, l2_norm_clip)
        return [g * tf.cast(factor, g.dtype) for g in grads], loss, logits[0], norm

    clipped, losses, logits, norms = tf.vectorized_map(one, (x, y, extras), fallback_to_while_loop=True)
    return [tf.reduce_sum(g, axis=0) for g in clipped], losses, logits, norms


def clipped_sum_loop(model, x, y, extras, l2_norm_clip: float, variables: Optional[List] = None):
    """Same contract as :func:`clipped_sum_vectorized`, one example at a time (``tf.map_fn``).

    For models whose per-example gradient ``tf.vectorized_map`` cannot vectorise (a ``tf.while_loop`` in the
    forward pass: LSTM, GRU); each example's gradient is computed alone, exactly as in the vectorized path.
    """
    variables = list(variables if variables is not None else model.core.trainable_variables)
    extras = dict(extras) if isinstance(extras, dict) else {}

    def one(args):
        xi, yi, ei = tf.nest.map_structure(_expand, args)
        with tf.GradientTape() as tape:
            loss, logits = model.per_example_loss(xi, yi, ei, training=True)
            loss = tf.reduce_sum(loss)
        grads = [tf.convert_to_tensor(g) for g in
                 tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)]
        norm = tf.linalg.global_norm(grads)
        factor = l2_norm_clip / tf.maximum(norm, l2_norm_clip)
        return [g * tf.cast(factor, g.dtype) for g in grads], loss, logits[0], norm

    sig_grads = [tf.TensorSpec(v.shape, v.dtype) for v in variables]
    clipped, losses, logits, norms = tf.map_fn(
        one, (x, y, extras), fn_output_signature=(sig_grads, tf.float32, tf.TensorSpec(None, tf.float32), tf.float32))
    return [tf.reduce_sum(g, axis=0) for g in clipped], losses, logits, norms


def clipped_sum(mode: str, model, x, y, extras, l2_norm_clip: float):
    """The clipped gradient sum by ``mode`` (``ghost``, ``vectorized`` or ``loop``; see :func:`select_clipping`)."""
    fn = {"ghost": clipped_sum_ghost, "vectorized": clipped_sum_vectorized, "loop": clipped_sum_loop}.get(mode)
    if fn is None:
        raise ValueError(f"Invalid value for argument `mode`. Received: mode={mode!r}. Expected one of "
                         "'ghost', 'vectorized', 'loop'")
    return fn(model, x, y, extras, l2_norm_clip)


def clipped_sum_ghost(model, x, y, extras, l2_norm_clip: float):
    """Same contract as :func:`clipped_sum_vectorized`, via ghost norms (plain weighted cross-entropy only)."""
    w = extras.get("sample_weight") if isinstance(extras, dict) else None

    def loss_fn(logits):
        if model._loss_fn is None or is_rowwise(model._loss_fn):  # tfresp's cross-entropy, tf_keras' own losses:
            loss = model.base_per_example_loss(y, logits)  # per example by construction (measured in the tests)
        else:  # the user's loss, each example's on its own row only (a loss may mix rows: batch mean, size)
            loss = tf.vectorized_map(lambda a: tf.reshape(model.base_per_example_loss(
                *tf.nest.map_structure(_expand, a)), []), (y, logits), fallback_to_while_loop=True)
        return loss * tf.cast(w, loss.dtype) if w is not None else loss

    return ghost.ghost_clip(model.core, x, loss_fn, l2_norm_clip, model.core.trainable_variables)


#: The counter-based generator of the DP noise (see :func:`_noised`); under a TPU strategy ``auto_select``.
NOISE_ALG = "philox"


def _noise_alg() -> str:
    """Philox, except on TPU: there ``auto_select`` is ThreeFry, the generator TPUs are fast at (no 32-bit
    multiply-high); the noise stays keyed on (seed, step) either way."""
    return "auto_select" if "TPU" in type(tf.distribute.get_strategy()).__name__ else NOISE_ALG


def _noised(summed, noise_std, std, seed, step, denom, replicas):
    """``(g + N(0, std²)) / denom`` for every gradient, drawn as ONE flat vector (one RNG op per step instead of
    one per variable: the per-variable ops were most of the DP overhead of small models).

    With ``step`` (seeded noise) the draw is ``stateless_normal((seed·1009, step))`` over the concatenated
    gradients, so a resumed run draws the same noise. Gradients of different dtypes are drawn one by one.
    The generator is Philox, named (:data:`NOISE_ALG`): it is what ``auto_select`` gives on CPU and GPU (same
    numbers), but under XLA ``auto_select`` is ThreeFry, which XLA's CPU backend expands into much slower code
    (measured on the Adult MLP, batch 376: the jit-compiled DP step 2.20 ms with ThreeFry, 1.26 ms with Philox,
    1.03 ms eager; benchmarks/dp_xla_cpu.py).
    """
    inv = 1.0 / tf.cast(denom, tf.float32)
    alg = _noise_alg()
    if noise_std <= 0:
        return [g * tf.cast(inv, g.dtype) for g in summed]
    if len({g.dtype for g in summed}) > 1:
        out = []
        for i, g in enumerate(summed):
            if step is not None:
                z = tf.random.stateless_normal(tf.shape(g), seed=tf.stack([tf.cast(seed, tf.int64) * 1009 + i, step]),
                                               dtype=g.dtype, alg=alg)
            else:
                z = tf.random.normal(tf.shape(g), dtype=g.dtype)
            out.append((g + z * tf.cast(std, g.dtype)) * tf.cast(inv, g.dtype))
        return out
    dtype = summed[0].dtype
    sizes = [int(np.prod(g.shape.as_list())) if g.shape.is_fully_defined() else tf.size(g) for g in summed]
    flat = tf.concat([tf.reshape(g, [-1]) for g in summed], axis=0)
    if step is not None:
        z = tf.random.stateless_normal(tf.shape(flat), seed=tf.stack([tf.cast(seed, tf.int64) * 1009, step]),
                                       dtype=dtype, alg=alg)
    else:
        z = tf.random.normal(tf.shape(flat), dtype=dtype)
    flat = (flat + z * tf.cast(std, dtype)) * tf.cast(inv, dtype)
    return [tf.reshape(p, tf.shape(g)) for p, g in zip(tf.split(flat, sizes), summed)]


def make_gradient_fn(mode: str, l2_norm_clip: float, noise_multiplier: float,
                     expected_batch_size: Optional[float] = None, seed: Optional[int] = None, counter=None,
                     canaries=None):
    """The DP-SGD ``gradient_fn(model, x, y, extras) -> (loss, grads, logits)`` for ResponsibleModel.

    Args:
        mode: ``ghost``, ``vectorized`` or ``loop`` (see :func:`select_clipping`).
        l2_norm_clip: C.
        noise_multiplier: σ; the noise std on the summed gradient is σ·C.
        expected_batch_size: ``q·n`` for Poisson sampling (the sum is divided by it); ``None`` divides by the
            realised batch size (fixed-size batches).
        seed: when given, the noise of step t is ``stateless_normal((seed, t))`` over all coordinates (exact resume);
            ``None`` uses the stateful global RNG. An int or an int64 ``tf.Variable`` (restorable). It must be
            SECRET: whoever knows it can regenerate and subtract the noise, voiding the guarantee; never pass
            the public config seed (the privacy concern draws one from ``secrets``).
        counter: the DP mechanism's own int64 step variable (:class:`~tfresp.privacy.dpsgd.DPSGD`): the noise
            of a step is keyed on it and it advances by one per noise draw. Without it the noise is keyed on
            ``optimizer.iterations``, which a new optimizer (recompile) resets to 0 - replaying the noise; every
            tfresp entry point passes one.
        canaries: white-box gradient canaries (:class:`~tfresp.privacy.canary.GradientCanaries`, needs
            ``counter``): their clipped pseudo-gradients are appended to the clipped sum, noised by the same loop
            as the model's gradient, and recorded (never applied to the model).

    Example:
        >>> model.gradient_fn = make_gradient_fn("vectorized", 1.0, 1.1, expected_batch_size=256.0)
    """
    noise_std = float(noise_multiplier) * float(l2_norm_clip)

    def gradient_fn(model, x, y, extras):
        # Under tf.distribute the optimizer sums the replicas' gradients: noise is added once per global step,
        # by replica 0 only, so the sum carries exactly N(0, σ²C²); every replica divides by the global batch.
        # (Each replica adding N(0, σ²C²/R) needs independent draws; MultiWorkerMirroredStrategy workers share
        # the seed and draw identical noise, giving √R times too much - measured in tests/distribute.)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        summed, losses, logits, _ = clipped_sum(mode, model, x, y, extras, l2_norm_clip)
        batch = tf.cast(tf.shape(losses)[0], tf.float32)
        denom = tf.constant(float(expected_batch_size), tf.float32) if expected_batch_size else \
            tf.maximum(batch * replicas, 1.0)
        std = noise_std
        if replicas > 1:
            rid = tf.distribute.get_replica_context().replica_id_in_sync_group
            std = noise_std * tf.cast(tf.equal(rid, 0), tf.float32)
        # With a seed, the noise of step t is a stateless function of (seed, t): a run resumed from a
        # checkpoint (tfresp/run/checkpointing.py) draws exactly the noise the uninterrupted run would have drawn.
        if counter is not None:
            step = tf.cast(counter, tf.int64)
        else:
            step = tf.cast(model.optimizer.iterations, tf.int64) if seed is not None and model.optimizer else None
        summed = list(summed)
        if canaries is not None:  # the canary coordinates go through the same clip bound and noise as the model
            summed.append(canaries.clipped_sum(step, l2_norm_clip))
        grads = _noised([tf.convert_to_tensor(g) for g in summed],  # dense: the noise touches every coordinate
                        noise_std, std, seed, step, denom, replicas)
        if canaries is not None:
            canaries.record(grads.pop() * tf.cast(denom, tf.float32))
        if counter is not None:
            counter.assign_add(1)
        variables = model.core.trainable_variables
        if model.core.losses:  # weight regularisers: data-independent, added after noise at no privacy cost
            with tf.GradientTape() as tape:
                reg = tf.add_n(model.core.losses)
            reg_grads = tape.gradient(reg, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            grads = [g + r for g, r in zip(grads, reg_grads)]
        real = tf.reduce_sum(tf.cast(extras["dp_mask"], tf.float32)) if isinstance(extras, dict) and \
            "dp_mask" in extras else batch  # padded static-shape batches: dummy rows are not rows
        loss = tf.reduce_sum(losses) / tf.maximum(real, 1.0)
        return loss, grads, logits

    gradient_fn.mode = mode
    return gradient_fn


def admit(model, clipping_mode: str = "auto") -> Tuple[str, str]:
    """Admit ``model`` under DP-SGD and choose its clipping: ``(mode, reason)``.

    Runs :func:`tfresp.privacy.clipping.check_model` (static checks, probes 1 and 2) and
    :func:`tfresp.privacy.clipping.select_clipping` (static ghost blockers, probe 3, loop detection).

    Args:
        model: a ResponsibleModel, or a ``keras.Model`` core (wrapped for the check).
        clipping_mode: ``auto``, ``ghost`` or ``vectorized``.

    Raises:
        IncompatibleModelError: listing every problem, each with a remedy.
    """
    from tfresp.models.base import ResponsibleModel

    if not isinstance(model, ResponsibleModel):
        model = ResponsibleModel(model)
    check_model(model)
    return select_clipping(model, clipping_mode)
