"""Integrated gradients with a completeness check (Sundararajan, Taly & Yan 2017, "Axiomatic
Attribution for Deep Networks").

For a differentiable ``F`` (here: the probability of the explained class), an input ``x`` and a
baseline ``b``::

    IG_i(x) = (x_i - b_i) * integral_0^1 dF(b + a (x - b)) / dx_i da

and completeness says ``sum_i IG_i(x) = F(x) - F(b)``. The integral is approximated by the
trapezoid rule on ``m`` steps; when the completeness error of an example exceeds
``tolerance * |F(x) - F(b)|`` the number of steps is doubled *for that example only*, reusing the
gradients already computed (the new points are the midpoints), until it holds or ``max_steps``
is reached. The steps used and the final error are reported per example.

Example:
    >>> res = integrated_gradients(lambda x: tf.nn.softmax(core(x)), x, baseline=x_train.mean(0))
    >>> res.attributions.shape, res.steps, res.completeness_error
"""
from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Sequence

import numpy as np
import tensorflow as tf

ABS_FLOOR = 1e-4  # float32 noise level of a probability difference: below it, relative error is meaningless


@dataclasses.dataclass
class IGResult:
    """Attributions of ``n`` examples and their completeness check.

    Attributes:
        attributions: ``[n, *input_shape]``.
        targets: explained class per example.
        f_x / f_baseline: ``F(x)`` and ``F(baseline)`` per example.
        steps: trapezoid steps used per example.
        completeness_error: ``|sum(attr) - (F(x) - F(b))| / max(|F(x) - F(b)|, 1e-4)`` per example.
        converged: whether the error is within the tolerance.
    """

    attributions: np.ndarray
    targets: np.ndarray
    f_x: np.ndarray
    f_baseline: np.ndarray
    steps: np.ndarray
    completeness_error: np.ndarray
    converged: np.ndarray
    tolerance: float

    def summary(self) -> dict:
        return {"examples": int(len(self.targets)), "tolerance": float(self.tolerance),
                "steps_used": {"min": int(self.steps.min()), "max": int(self.steps.max()),
                               "mean": float(self.steps.mean())},
                "completeness_error": {"max": float(self.completeness_error.max()),
                                       "mean": float(self.completeness_error.mean())},
                "all_converged": bool(self.converged.all())}


class GradientPath:
    """Batched gradients of ``F_target`` at points on straight paths, one compiled function.

    Args:
        fn: TF function ``inputs [N, *shape] -> probabilities [N, K]``.
        input_shape: shape of one input (without batch).
        batch_size: points per compiled call (bounded memory).
    """

    def __init__(self, fn: Callable, input_shape: Sequence[int], batch_size: int = 512):
        self.batch_size = int(batch_size)
        shape = [None] + list(input_shape)
        spec_x = tf.TensorSpec(shape, tf.float32)

        def grads(x, b, alpha, target):
            # x, b: [N, *shape] endpoints; alpha: [N]; target: [N]
            a = tf.reshape(alpha, [-1] + [1] * (len(shape) - 1))
            pts = b + a * (x - b)
            with tf.GradientTape() as tape:
                tape.watch(pts)
                proba = fn(pts)
                f = tf.gather(proba, target, axis=1, batch_dims=1)
            return tape.gradient(f, pts)

        def values(x, target):
            return tf.gather(fn(x), target, axis=1, batch_dims=1)

        self._grads = tf.function(grads, input_signature=[spec_x, spec_x, tf.TensorSpec([None], tf.float32),
                                                          tf.TensorSpec([None], tf.int32)])
        self._values = tf.function(values, input_signature=[spec_x, tf.TensorSpec([None], tf.int32)])
        self._proba = tf.function(fn, input_signature=[spec_x])

    def proba(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self._proba(tf.constant(x[i:i + self.batch_size], tf.float32)).numpy()
                               for i in range(0, len(x), self.batch_size)])

    def value(self, x: np.ndarray, target: np.ndarray) -> np.ndarray:
        return np.concatenate([self._values(tf.constant(x[i:i + self.batch_size], tf.float32),
                                            tf.constant(target[i:i + self.batch_size], tf.int32)).numpy()
                               for i in range(0, len(x), self.batch_size)]).astype(np.float64)

    def grad_sum(self, x: np.ndarray, b: np.ndarray, ex: np.ndarray, alphas: np.ndarray, target: np.ndarray,
                 weights: np.ndarray) -> np.ndarray:
        """``sum_j weights_j * grad F(b + alpha_j (x - b))`` per example, points listed as (ex, alpha) pairs."""
        out = np.zeros_like(x, dtype=np.float64)
        for i in range(0, len(ex), self.batch_size):
            e = ex[i:i + self.batch_size]
            g = self._grads(tf.constant(x[e], tf.float32), tf.constant(b[e], tf.float32),
                            tf.constant(alphas[i:i + self.batch_size], tf.float32),
                            tf.constant(target[e], tf.int32)).numpy().astype(np.float64)
            w = weights[i:i + self.batch_size].reshape([-1] + [1] * (x.ndim - 1))
            np.add.at(out, e, g * w)
        return out


def integrated_gradients(fn: Callable, x: np.ndarray, baseline: Optional[np.ndarray] = None,
                         target: Optional[Sequence[int]] = None, *, steps: int = 32, max_steps: int = 1024,
                         tolerance: float = 0.05, batch_size: int = 512,
                         path: Optional[GradientPath] = None) -> IGResult:
    """Integrated gradients of ``n`` inputs, refining the steps until completeness holds.

    Args:
        fn: ``inputs [N, *shape] -> probabilities [N, K]`` (TF-differentiable).
        x: inputs ``[n, *shape]``.
        baseline: ``[*shape]`` or ``[n, *shape]`` (default zeros).
        target: class per example (default: the predicted class).
        steps: initial trapezoid steps.
        max_steps: upper bound of the doubling.
        tolerance: completeness tolerance relative to ``|F(x) - F(b)|``.
        batch_size: gradient points per compiled call.
        path: a prebuilt :class:`GradientPath` (reuses the compiled function across calls).

    Returns:
        :class:`IGResult`.
    """
    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    b = np.zeros_like(x) if baseline is None else np.broadcast_to(np.asarray(baseline, np.float32), x.shape).copy()
    path = path or GradientPath(fn, x.shape[1:], batch_size)
    if target is None:
        target = np.argmax(path.proba(x), axis=1)
    target = np.asarray(target, dtype=np.int32)
    f_x, f_b = path.value(x, target), path.value(b, target)
    delta = f_x - f_b
    diff = (x - b).astype(np.float64)
    reduce_axes = tuple(range(1, x.ndim))

    # trapezoid on m steps: S = g(0)/2 + g(1)/2 + sum interior; integral ~ S / m
    m = np.full(n, int(steps))
    ex = np.repeat(np.arange(n), 2)
    s = path.grad_sum(x, b, ex, np.tile([0.0, 1.0], n), target, np.full(2 * n, 0.5))
    k = np.arange(1, steps)
    s += path.grad_sum(x, b, np.repeat(np.arange(n), len(k)), np.tile(k / steps, n), target, np.ones(n * len(k)))
    active = np.ones(n, bool)
    while True:
        attr = diff * (s / m.reshape([-1] + [1] * (x.ndim - 1)))
        err = np.abs(attr.sum(axis=reduce_axes) - delta) / np.maximum(np.abs(delta), ABS_FLOOR)
        ok = err <= tolerance
        active = ~ok & (2 * m <= max_steps)
        if not active.any():
            break
        idx = np.nonzero(active)[0]
        ex_list, al_list = [], []
        for i in idx:  # midpoints of the current grid of example i
            mid = (2 * np.arange(m[i]) + 1) / (2 * m[i])
            ex_list.append(np.full(len(mid), i))
            al_list.append(mid)
        ex_new, al_new = np.concatenate(ex_list), np.concatenate(al_list)
        s += path.grad_sum(x, b, ex_new, al_new, target, np.ones(len(ex_new)))
        m[idx] *= 2
    return IGResult(attributions=attr, targets=target, f_x=f_x, f_baseline=f_b, steps=m, completeness_error=err,
                    converged=ok, tolerance=float(tolerance))


def aggregate_columns(attributions: np.ndarray, preprocessor) -> tuple:
    """Sum encoded-feature attributions back to raw columns (a categorical column sums its one-hot dims).

    Returns:
        ``(column_names, [n, n_columns] attributions)``.
    """
    names, blocks, start = [], [], 0
    for c in preprocessor.spec:
        width = 1 if c["kind"] == "numeric" else len(c["vocab"])
        names.append(c["name"])
        blocks.append(attributions[:, start:start + width].sum(axis=1))
        start += width
    if start != attributions.shape[1]:
        raise ValueError(f"Invalid value for argument `attributions`. Received: {attributions.shape[1]} encoded "
                         f"dims. Expected {start} (the preprocessor's encoded_dim).")
    return names, np.stack(blocks, axis=1)


# -- text: IG over the embedding layer's output -----------------------------------------------------
def _find(model, cls_names) -> List:
    found = []
    for layer in model.layers:
        if layer.__class__.__name__ in cls_names:
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(_find(layer, cls_names))
    return found


class _EmbeddingPath:
    """Temporarily routes an ``Embedding`` layer's output along ``b + alpha (e - b)`` and records it.

    This is the one place that reaches into a Keras layer (its ``call``), restored on exit.
    """

    def __init__(self, layer):
        self.layer = layer
        self.alpha = None
        self.baseline = 0.0
        self.recorded = None
        self.ids = None
        self.tape = None

    def __enter__(self):
        original = self.layer.call

        def call(inputs, *args, **kwargs):
            e = original(inputs, *args, **kwargs)
            self.ids = inputs
            if self.alpha is not None:
                e = self.baseline + tf.reshape(self.alpha, [-1, 1, 1]) * (e - self.baseline)
            if self.tape is not None:
                self.tape.watch(e)
            self.recorded = e
            return e

        self._original = original
        self.layer.call = call
        return self

    def __exit__(self, *exc):
        del self.layer.call  # back to the class method
        return False


def text_integrated_gradients(model, texts: Sequence[str], target: Optional[Sequence[int]] = None, *,
                              steps: int = 32, max_steps: int = 1024, tolerance: float = 0.05,
                              from_logits: bool = True, batch_size: int = 256, forward: Optional[Callable] = None,
                              vocab: Optional[Sequence[str]] = None) -> List[dict]:
    """IG over the embedding vectors of a Keras text model (strings in, logits out).

    The baseline is the all-zero embedding sequence (same length and padding mask as the input);
    a token's attribution is the sum over its embedding dimensions. Completeness is checked on
    ``F(x) - F(zero embeddings)`` with the same step doubling as :func:`integrated_gradients`.

    Args:
        model: Keras model with a ``TextVectorization`` layer followed by an ``Embedding`` layer.
        texts: raw strings.
        target: class per text (default: predicted).
        forward: ``strings -> logits`` when ``model`` itself does not take strings (e.g. a run's
            preprocessor followed by its core); ``model`` is then only searched for the Embedding layer.
        vocab: id -> token names (default: the model's ``TextVectorization`` vocabulary).

    Returns:
        one dict per text: ``tokens``, ``attributions`` (per token), ``steps``, ``completeness_error``,
        ``converged``, ``target``.
    """
    emb_layers = _find(model, ("Embedding",))
    if not emb_layers:
        from tfresp.errors import IncompatibleModelError

        raise IncompatibleModelError(f"model {model.name!r} has no Embedding layer: text integrated gradients "
                                     "attribute to token embeddings; use method 'lime' for this model")
    if vocab is None:
        vec = _find(model, ("TextVectorization",))
        vocab = vec[0].get_vocabulary() if vec else None
    forward = forward or model
    hook = _EmbeddingPath(emb_layers[0])
    results = []
    with hook:
        def proba(strings, alpha):
            hook.alpha = alpha
            out = forward(strings, training=False) if forward is model else forward(strings)
            return tf.nn.softmax(out) if from_logits else out

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.float32),
                                      tf.TensorSpec([None], tf.int32)])
        def grads(strings, alpha, tgt):
            with tf.GradientTape() as tape:
                hook.tape = tape
                p = proba(strings, alpha)
                f = tf.gather(p, tgt, axis=1, batch_dims=1)
            hook.tape = None
            e = hook.recorded
            return tape.gradient(f, e), f, hook.ids

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def embed(strings):
            hook.alpha = None
            p = proba(strings, None)
            return hook.recorded, hook.ids, p

        for i, text in enumerate(texts):
            e_full, ids, p = embed(tf.constant([text]))
            e_full, ids, p = e_full.numpy()[0].astype(np.float64), ids.numpy()[0], p.numpy()[0]
            tgt = int(np.argmax(p)) if target is None else int(target[i])
            one = lambda a: grads(tf.constant([text] * len(a)), tf.constant(a, tf.float32),  # noqa: E731
                                  tf.constant([tgt] * len(a), tf.int32))
            f_x = float(p[tgt])
            f_b = float(one(np.array([0.0]))[1].numpy()[0])
            delta = f_x - f_b

            def gsum(alphas, weights):
                total = np.zeros_like(e_full)
                for j in range(0, len(alphas), batch_size):
                    g = one(alphas[j:j + batch_size])[0].numpy().astype(np.float64)
                    total += np.tensordot(weights[j:j + batch_size], g, axes=1)
                return total

            m = int(steps)
            s = gsum(np.array([0.0, 1.0]), np.array([0.5, 0.5])) + gsum(np.arange(1, m) / m, np.ones(m - 1))
            while True:
                attr = e_full * s / m  # baseline embedding is zero: x - b = e
                err = abs(attr.sum() - delta) / max(abs(delta), ABS_FLOOR)
                if err <= tolerance or 2 * m > max_steps:
                    break
                s += gsum((2 * np.arange(m) + 1) / (2 * m), np.ones(m))
                m *= 2
            per_token = attr.sum(axis=-1)
            keep = ids != 0
            tokens = [vocab[t] if vocab is not None and t < len(vocab) else str(t) for t in ids[keep]]
            results.append({"method": "integrated_gradients", "target": tgt, "tokens": tokens,
                            "attributions": [float(v) for v in per_token[keep]],
                            "padding_attribution": float(per_token[~keep].sum()),
                            "f_x": f_x, "f_baseline": f_b, "steps": m, "completeness_error": float(err),
                            "converged": bool(err <= tolerance), "tolerance": float(tolerance)})
    return results
