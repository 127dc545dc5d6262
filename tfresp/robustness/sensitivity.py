"""Fragility figures: parameter sensitivity D(θ) and mean input-gradient norm.

Parameter sensitivity (as specified for tfresp, in the spirit of Novak et al. 2018, "Sensitivity
and Generalization in Neural Networks")::

    D(θ) = (1/N) Σ_i ( Σ_j ∂M(x_i)/∂θ_j )²,   M(x) = the logit of the predicted class.

``Σ_j ∂M/∂θ_j`` is the directional derivative of ``M`` along the all-ones vector in parameter
space, so one forward-mode pass (a JVP with tangent 1 for every trainable parameter) gives it for
a whole batch at once, instead of one backward pass per example.

Mean input-gradient norm: ``(1/N) Σ_i ‖∂M(x_i)/∂x_i‖₂`` (over attackable coordinates), a
first-order proxy for how far a small input perturbation moves the decision (larger = more fragile).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def _predicted_logit(logits, cls):
    return tf.gather(logits, cls, axis=1, batch_dims=1)


def per_example_parameter_sums(model, x, batch_size: int = 256) -> np.ndarray:
    """``s_i = Σ_j ∂M(x_i)/∂θ_j`` for every example (forward-mode JVP with all-ones tangents)."""
    variables = model.trainable_variables
    out = []
    for start in range(0, len(x), batch_size):
        xb = tf.convert_to_tensor(x[start:start + batch_size])
        cls = tf.argmax(model(xb, training=False), axis=-1, output_type=tf.int32)
        with tf.autodiff.ForwardAccumulator(variables, [tf.ones_like(v) for v in variables]) as acc:
            m = _predicted_logit(model(xb, training=False), cls)
        jvp = acc.jvp(m, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        out.append(jvp.numpy())
    return np.concatenate(out) if out else np.zeros([0], np.float32)


def parameter_sensitivity(model, x, batch_size: int = 256) -> float:
    """D(θ) = mean over examples of the squared sum of output gradients w.r.t. all trainable parameters."""
    s = per_example_parameter_sums(model, x, batch_size).astype(np.float64)
    return float(np.mean(s ** 2)) if len(s) else float("nan")


def input_gradient_norm(model, x, mask=None, batch_size: int = 256) -> float:
    """Mean L2 norm of ``∂M(x_i)/∂x_i`` (M = predicted-class logit), restricted to ``mask`` dims."""
    norms = []
    for start in range(0, len(x), batch_size):
        xb = tf.convert_to_tensor(x[start:start + batch_size])
        with tf.GradientTape() as tape:
            tape.watch(xb)
            logits = model(xb, training=False)
            cls = tf.argmax(logits, axis=-1, output_type=tf.int32)
            m = tf.reduce_sum(_predicted_logit(logits, cls))
        g = tape.gradient(m, xb)
        if mask is not None:
            g = g * tf.cast(mask, g.dtype)
        g = tf.reshape(g, [tf.shape(g)[0], -1])
        norms.append(tf.norm(g, axis=1).numpy())
    return float(np.mean(np.concatenate(norms))) if norms else float("nan")
