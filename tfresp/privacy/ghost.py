"""Ghost (fast) per-example gradient norms, owned by tfresp (no tensorflow-privacy).

Idea (Goodfellow 2015; Lee & Kifer 2021; Li et al. 2022, "Large Language Models Can Be Strong Differentially
Private Learners"): for a linear map ``z_t = a_t·W`` applied at positions ``t`` of one example, the example's
gradient is ``Σ_t a_tᵀ g_t`` (``g_t = ∂loss/∂z_t``), and its squared norm is
``Σ_{t,t'} (a_t·a_t')(g_t·g_t')`` - computable from activations and output gradients without ever forming the
per-example gradient.

Clipped sum without a second backward pass (the "book-keeping" method, Bu et al. 2023, "Differentially Private
Optimization on Large Model at Small Cost"): with ``c_i = min(1, C/‖g_i‖)`` the clipped sum of a linear layer is
``Σ_i c_i Σ_t a_{i,t}ᵀ g_{i,t}``, formed from the same recorded ``a`` and ``g`` (or from the per-example gradient
where that was formed for the norm: per layer the cheaper of the two, as in Bu et al. 2022's mixed ghost clipping).
The step costs one forward and one backward pass (to the layer outputs only) plus the norms.

How: during one forward pass each supported layer's ``call`` is intercepted (an instance attribute shadows the
class method for the duration of the pass) to record its input and its pre-activation output ``z``, which the
tape watches so ``∂loss/∂z`` comes from one backward pass.

Reused layers: a layer called k times in one forward pass has per-example gradient ``Σ_k Σ_t a_{k,t}ᵀ g_{k,t}``.
The calls are concatenated along the position axis, so the cross terms between calls are in the sum and the
norm is exact (tensorflow-privacy 0.9 summed the squared norms of each call separately, which under-estimates
the norm: measured 2.0 at C = 1 for a Dense layer called 4 times). LayerNormalization and biases are summed over
calls as small per-example vectors before the norm is taken.

Written from the formulas above, not adapted from tensorflow-privacy's code: its registry walks the functional
graph node by node and cannot see calls inside MultiHeadAttention or repeated calls; intercepting ``call`` covers
both.
"""
from __future__ import annotations

import contextlib
import string
import threading
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tf_keras.src.layers.normalization.batch_normalization import BatchNormalizationBase

from tfresp.errors import IncompatibleModelError

#: Layer types whose per-example gradient norm is computed here (exact types: a subclass may override ``call``).
#: MultiHeadAttention owns no weights itself: its weights live in EinsumDense sublayers, which are intercepted.
GHOST_LAYERS = {
    "Dense": keras.layers.Dense,
    "Embedding": keras.layers.Embedding,
    "LayerNormalization": keras.layers.LayerNormalization,
    "EinsumDense": keras.layers.EinsumDense,
    "MultiHeadAttention": keras.layers.MultiHeadAttention,
}
#: Leaf layers with a norm rule (they own the weights).
_LEAVES = (keras.layers.Dense, keras.layers.Embedding, keras.layers.LayerNormalization, keras.layers.EinsumDense)
#: Known containers that only use their weights through sublayer calls.
_CONTAINERS = (keras.layers.MultiHeadAttention,)


def _is_leaf(layer) -> bool:
    return type(layer) in _LEAVES


# -- the private tf_keras internals tfresp's clipping relies on (isolated here) ----------------------------------
#: BatchNormalization (v1 and v2) and SyncBatchNormalization share this base class.
BATCH_NORM_BASE = BatchNormalizationBase


def all_layers(model) -> list:
    """Every layer inside ``model`` (nested models and sublayers such as MultiHeadAttention's EinsumDense)."""
    return list(model._flatten_layers(include_self=False, recursive=True))


def is_functional(model) -> bool:
    """Whether ``model`` is a functional/Sequential model (its weights are used only through layer calls)."""
    return bool(getattr(model, "_is_graph_network", False))


def own_weights(layer, trainable: bool) -> list:
    """The weights ``layer`` created or tracks itself (not those of its sublayers)."""
    return list(layer._trainable_weights if trainable else layer._non_trainable_weights)


def _parse_einsum(equation: str, input_rank: int):
    """``(in, kernel, out)`` letter specs with ``...`` expanded for an input of ``input_rank``."""
    left, out = equation.split("->")
    inp, kern = left.split(",")
    if "..." in kern:
        raise ValueError("an ellipsis in the kernel spec")
    if "..." in inp:
        free = [c for c in string.ascii_letters if c not in equation]
        extra = "".join(free[:input_rank - (len(inp) - 3)])
        inp, out = inp.replace("...", extra), out.replace("...", extra)
    return inp, kern, out


def einsum_problem(layer) -> str:
    """Why ``layer`` (an EinsumDense) has no exact norm rule here, or ``""``."""
    try:
        inp, kern, out = _parse_einsum(layer.equation, 2 + layer.equation.count("..."))
    except ValueError as e:
        return f"equation {layer.equation!r}: {e}"
    if inp[0] not in out or inp[0] in kern:
        return f"equation {layer.equation!r}: the first input axis is not a batch axis kept in the output"
    if set(kern) - set(inp) - set(out):
        return f"equation {layer.equation!r}: a kernel axis appears in neither input nor output"
    return ""


def _positions_by_features(t, n_lead, features):
    """``[B, p1.., f1..]`` (``n_lead`` = 1 + number of position axes) -> ``[B, P, F]`` (safe for B = 0).

    P is static when the position axes are, so :func:`_linear_sq_norm` can pick the cheaper formula.
    """
    static = t.shape[1:n_lead].as_list()
    positions = int(np.prod(static)) if None not in static else tf.reduce_prod(tf.shape(t)[1:n_lead])
    out = tf.reshape(t, tf.stack([tf.shape(t)[0], positions, features]))
    return tf.ensure_shape(out, [None, positions if isinstance(positions, int) else None, features])


def _flat3(t, last):
    """``[B, ..., last]`` -> ``[B, T, last]`` (T = product of the middle axes)."""
    if t.shape.rank == 3 and t.shape[1] is not None:
        return t
    if t.shape.rank == 2:
        return t[:, None, :]
    return _positions_by_features(t, t.shape.rank - 1, last)


def _linear_sq_norm(a, g):
    """``(sq [B], per)``: ``‖Σ_t a_tᵀ g_t‖²`` per example for ``a [B, T, I]``, ``g [B, T, O]``, by the ghost
    identity or by forming the per-example gradient ``per [B, I, O]`` (returned, else ``None``), whichever is
    cheaper."""
    t, i, o = a.shape[1], a.shape[2], g.shape[2]
    if t is not None and t * (i + o) > i * o:  # forming the [B, I, O] per-example gradient is cheaper
        per = tf.einsum("bti,bto->bio", a, g)
        return tf.reduce_sum(tf.square(per), axis=[1, 2]), per
    return tf.reduce_sum(tf.matmul(a, a, transpose_b=True) * tf.matmul(g, g, transpose_b=True), axis=[1, 2]), None


def _bias_per_example(g, bias_shape):
    """Per-example gradient of a bias broadcast-added to an output whose gradient is ``g [B, ...]``."""
    rank, nb = g.shape.rank, len(bias_shape)
    lead = rank - nb
    if lead < 1:
        raise ValueError("the bias spans the batch axis")
    if lead > 1:
        g = tf.reduce_sum(g, axis=list(range(1, lead)))
    keep = [1 + j for j, d in enumerate(bias_shape) if d == 1 and g.shape[1 + j] != 1]
    if keep:
        g = tf.reduce_sum(g, axis=keep, keepdims=True)
    return g


def _cat(parts):
    """Concatenate per-call tensors along positions (a layer called once skips the concat)."""
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis=1)


def _weighted(c, per):
    """``Σ_b c_b per_b`` for ``per [B, ...]``."""
    return tf.tensordot(tf.cast(c, per.dtype), per, axes=[[0], [0]])


def _scale_rows(c, t):
    return t * tf.reshape(tf.cast(c, t.dtype), [-1] + [1] * (t.shape.rank - 1))


# Each rule returns ``(sq [B], grads)`` where ``grads(c)`` gives ``{id(variable): Σ_i c_i ∂loss_i/∂variable}``
# from the same recorded tensors (the book-keeping method, Bu et al. 2023: no second backward pass).
def _dense_sq(layer, calls):
    kernel, bias = layer.kernel, (layer.bias if layer.use_bias else None)
    if len(calls) == 1 and calls[0][0].shape.rank == 2:  # one call, one position: ‖a‖²‖g‖² (few small ops)
        x, _, g = calls[0]
        x = tf.cast(x, g.dtype)
        gsq = tf.reduce_sum(tf.square(g), 1)
        sq = tf.reduce_sum(tf.square(x), 1) * gsq
        if bias is not None:
            sq += gsq

        def grads(c):
            gc = _scale_rows(c, g)
            out = {id(kernel): tf.matmul(x, gc, transpose_a=True)}
            if bias is not None:
                out[id(bias)] = tf.reduce_sum(gc, 0)
            return out

        return sq, grads
    a = _cat([_flat3(tf.cast(x, gz.dtype), kernel.shape[0]) for x, _, gz in calls])
    g = _cat([_flat3(gz, kernel.shape[-1]) for _, _, gz in calls])
    sq, per = _linear_sq_norm(a, g)
    gb = tf.reduce_sum(g, axis=1) if bias is not None else None
    if bias is not None:
        sq += tf.reduce_sum(tf.square(gb), axis=1)

    def grads(c):
        k = _weighted(c, per) if per is not None else tf.einsum("bti,bto->io", a, _scale_rows(c, g))
        out = {id(kernel): tf.reshape(k, tf.shape(kernel))}
        if bias is not None:
            out[id(bias)] = _weighted(c, gb)
        return out

    return sq, grads


def _embedding_sq(layer, calls):
    ids = _cat([tf.reshape(tf.cast(x, tf.int32), [tf.shape(x)[0], -1]) if x.shape.rank > 1 else
                tf.reshape(tf.cast(x, tf.int32), [-1, 1]) for x, _, _ in calls])
    g = _cat([_flat3(gz, layer.output_dim) for _, _, gz in calls])
    same = tf.cast(tf.equal(ids[:, :, None], ids[:, None, :]), g.dtype)
    sq = tf.reduce_sum(same * tf.matmul(g, g, transpose_b=True), axis=[1, 2])
    table = layer.embeddings

    def grads(c):
        values = tf.reshape(_scale_rows(c, g), [-1, layer.output_dim])
        return {id(table): tf.IndexedSlices(tf.cast(values, table.dtype), tf.reshape(ids, [-1]),
                                            tf.shape(table, out_type=tf.int32))}

    return sq, grads


def _layer_norm_sq(layer, calls):
    gamma, beta = 0.0, 0.0
    for x, _, gz in calls:
        x = tf.cast(x, gz.dtype)
        axes = [a % x.shape.rank for a in layer.axis]
        other = [i for i in range(1, x.shape.rank) if i not in axes]
        mean, var = tf.nn.moments(x, axes, keepdims=True)
        normed = (x - mean) * tf.math.rsqrt(var + layer.epsilon)
        gamma += tf.reduce_sum(gz * normed, axis=other) if other else gz * normed
        beta += tf.reduce_sum(gz, axis=other) if other else gz
    sq = 0.0
    if layer.scale:
        sq += tf.reduce_sum(tf.reshape(tf.square(gamma), [tf.shape(gamma)[0], -1]), axis=1)
    if layer.center:
        sq += tf.reduce_sum(tf.reshape(tf.square(beta), [tf.shape(beta)[0], -1]), axis=1)

    def grads(c):
        out = {}
        if layer.scale:
            out[id(layer.gamma)] = tf.reshape(_weighted(c, gamma), tf.shape(layer.gamma))
        if layer.center:
            out[id(layer.beta)] = tf.reshape(_weighted(c, beta), tf.shape(layer.beta))
        return out

    return sq, grads


def _einsum_sq(layer, calls):
    inp, kern, out = _parse_einsum(layer.equation, calls[0][0].shape.rank)
    b = inp[0]
    contracted = "".join(c for c in kern if c in inp and c not in out)
    produced = "".join(c for c in kern if c in out and c not in inp)
    shared = [c for c in kern if c in inp and c in out]
    positions = "".join(c for c in out if c != b and c in inp and c not in kern)
    kshape = dict(zip(kern, layer.kernel.shape.as_list()))

    def size(letters):
        return int(np.prod([kshape[c] for c in letters])) if letters else 1

    per = None
    if shared:  # not a plain linear map per position: form the per-example kernel gradient, summed over calls
        per = tf.add_n([tf.einsum(f"{inp},{out}->{b}{kern}", tf.cast(x, gz.dtype), gz) for x, _, gz in calls])
        sq = tf.reduce_sum(tf.reshape(tf.square(per), [tf.shape(per)[0], -1]), axis=1)
    else:
        a = _cat([_positions_by_features(tf.einsum(f"{inp}->{b}{positions}{contracted}", tf.cast(x, gz.dtype)),
                                         1 + len(positions), size(contracted)) for x, _, gz in calls])
        g = _cat([_positions_by_features(tf.einsum(f"{out}->{b}{positions}{produced}", gz),
                                         1 + len(positions), size(produced)) for _, _, gz in calls])
        sq, flat_per = _linear_sq_norm(a, g)
        if flat_per is not None and kern == contracted + produced:  # [B, I, O] is the kernel's layout, flattened
            per = tf.reshape(flat_per, tf.concat([tf.shape(flat_per)[:1], tf.shape(layer.kernel)], 0))
    bias = layer.bias
    bper = None
    if bias is not None:
        bper = tf.add_n([_bias_per_example(gz, bias.shape.as_list()) for _, _, gz in calls])
        sq += tf.reduce_sum(tf.reshape(tf.square(bper), [tf.shape(bper)[0], -1]), axis=1)

    def grads(c):
        if per is not None:
            k = _weighted(c, per)
        else:
            k = tf.add_n([tf.einsum(f"{inp},{out}->{kern}", tf.cast(x, gz.dtype), _scale_rows(c, gz))
                          for x, _, gz in calls])
        res = {id(layer.kernel): k}
        if bias is not None:
            res[id(bias)] = tf.reshape(_weighted(c, bper), tf.shape(bias))
        return res

    return sq, grads


_RULES = {keras.layers.Dense: _dense_sq, keras.layers.Embedding: _embedding_sq,
          keras.layers.LayerNormalization: _layer_norm_sq, keras.layers.EinsumDense: _einsum_sq}


def _dense_input(layer, inputs):
    if not isinstance(inputs, tf.Tensor) or isinstance(inputs, (tf.RaggedTensor, tf.SparseTensor)):
        raise IncompatibleModelError(f"`privacy.clipping`: ghost clipping needs dense tensor inputs. Received: "
                                     f"layer {layer.name!r} called on a {type(inputs).__name__}. Remedy: use "
                                     "privacy.clipping: vectorized")
    return inputs


# Interception is shared by threads (tf.distribute runs one thread per replica): each layer gets one wrapper
# while any thread records it, and the wrapper records into the calling thread's own table.
_LOCK = threading.RLock()
_INSTALLED: Dict[int, list] = {}  # id(layer) -> [layer, users, previous instance `call` or None]
_LOCAL = threading.local()


def _wrapper(layer):
    original = type(layer).call.__get__(layer)
    has_act = isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense))

    def call(inputs, *args, **kwargs):
        active = getattr(_LOCAL, "active", None)
        if active is None or id(layer) not in active[0]:
            return original(inputs, *args, **kwargs)
        records, tape = active
        inputs = _dense_input(layer, inputs)
        if has_act:  # the pre-activation output from Keras's own call; the lock keeps the swap thread-local
            with _LOCK:
                act = layer.activation
                object.__setattr__(layer, "activation", None)
                try:
                    z = original(inputs, *args, **kwargs)
                finally:
                    object.__setattr__(layer, "activation", act)
        else:
            act, z = None, original(inputs, *args, **kwargs)
        tape.watch(z)
        records[id(layer)].append((inputs, z))
        return act(z) if act is not None else z

    return call


@contextlib.contextmanager
def recording(layers: Sequence, tape: tf.GradientTape):
    """Within the block, this thread's calls of ``layers`` record ``(inputs, z)`` (``z``: pre-activation output,
    watched by ``tape``).

    Yields ``{id(layer): [(inputs, z), ...]}``. The original ``call`` methods are restored on exit.
    """
    records: Dict[int, List[Tuple[tf.Tensor, tf.Tensor]]] = {id(l): [] for l in layers}
    with _LOCK:
        for layer in layers:
            entry = _INSTALLED.get(id(layer))
            if entry is None:
                _INSTALLED[id(layer)] = [layer, 1, layer.__dict__.get("call")]
                object.__setattr__(layer, "call", _wrapper(layer))
            else:
                entry[1] += 1
    outer = getattr(_LOCAL, "active", None)
    _LOCAL.active = (records, tape)
    try:
        yield records
    finally:
        _LOCAL.active = outer
        with _LOCK:
            for layer in layers:
                entry = _INSTALLED[id(layer)]
                entry[1] -= 1
                if entry[1] == 0:
                    del _INSTALLED[id(layer)]
                    if entry[2] is not None:
                        object.__setattr__(layer, "call", entry[2])
                    else:
                        object.__delattr__(layer, "call")


def trainable_leaves(core: keras.Model) -> list:
    """The supported leaf layers of ``core`` that own trainable weights (each once)."""
    seen, out = set(), []
    for layer in all_layers(core):
        if _is_leaf(layer) and layer.trainable_weights and id(layer) not in seen:
            seen.add(id(layer))
            out.append(layer)
    return out


def per_example_sq_norms(leaves, records, grads):
    """``([B] squared per-example gradient norms, [grads(c)])`` over ``leaves`` from the recorded calls and
    ``∂loss/∂z`` (``grads(c)`` gives each leaf's ``Σ_i c_i ∂loss_i/∂w`` by variable id)."""
    total, makers = None, []
    it = iter(grads)
    for layer in leaves:
        calls = [(x, z, tf.cast(next(it), tf.float32)) for x, z in records[id(layer)]]
        if not calls:
            continue
        sq, make = _RULES[type(layer)](layer, calls)
        total = sq if total is None else total + sq
        makers.append(make)
    return total, makers


def ghost_clip(core: keras.Model, x, per_example_loss_fn: Callable, l2_norm_clip: float,
               variables: Sequence[tf.Variable]):
    """Clipped summed gradient with one forward and one backward pass (ghost norms + book-keeping).

    The backward pass gives each layer's output gradients ``∂loss/∂z``, hence per-example gradient norms (no
    per-example gradient is materialised unless that is cheaper); the clipped sum ``Σ_i c_i ∂loss_i/∂w`` with
    ``c_i = min(1, C/‖g_i‖)`` is then formed from the same recorded inputs and output gradients (the
    book-keeping method, Bu et al. 2023, "Differentially Private Optimization on Large Model at Small Cost"),
    instead of a second backward pass on ``Σ_i c_i·loss_i`` (Li et al. 2022). Variables of ``variables`` that no
    recorded leaf owns get the second backward pass. Only valid when :func:`tfresp.privacy.clipping.select_clipping`
    picked ``ghost`` for the model.

    Returns:
        ``(clipped_grad_sum, per_example_losses [B], logits, norms [B])``.
    """
    leaves = trainable_leaves(core)
    variables = list(variables)
    owned = {id(w) for layer in leaves for w in layer.trainable_weights}
    rest = [v for v in variables if id(v) not in owned]
    tape = tf.GradientTape(persistent=bool(rest), watch_accessed_variables=False)
    with tape:
        if rest:
            tape.watch(rest)
        with recording(leaves, tape) as records:
            logits = core(x, training=True)
        losses = per_example_loss_fn(logits)
        summed = tf.reduce_sum(losses)
    zs = [z for layer in leaves for _, z in records[id(layer)]]
    grads = tape.gradient(summed, zs, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    sq, makers = per_example_sq_norms(leaves, records, grads)
    norms = tf.sqrt(tf.maximum(sq, 0.0)) if sq is not None else tf.zeros_like(losses)
    weights = tf.stop_gradient(tf.cast(l2_norm_clip, norms.dtype) / tf.maximum(norms, l2_norm_clip))
    by_id = {}
    for make in makers:
        by_id.update(make(weights))
    if rest:
        with tape:
            weighted = tf.reduce_sum(tf.cast(weights, losses.dtype) * losses)
        for v, g in zip(rest, tape.gradient(weighted, rest, unconnected_gradients=tf.UnconnectedGradients.ZERO)):
            by_id[id(v)] = g
    del tape
    clipped = [by_id[id(v)] if id(v) in by_id else tf.zeros_like(v) for v in variables]
    clipped = [tf.cast(g, v.dtype) if not isinstance(g, tf.IndexedSlices) else g for g, v in zip(clipped, variables)]
    return clipped, losses, logits, norms
