"""The one place tfresp touches tensorflow-privacy (and the Keras internals it relies on).

tensorflow-privacy's top-level ``__init__`` crashes on recent TF, so only submodules are imported, and
only here. Version quirks of its fast-gradient-clipping API ("ghost" norms, Li et al. 2022 / Lee & Kifer
2021; the outer-product trick of Goodfellow 2015) live in this module.
"""
from __future__ import annotations

from typing import Callable, List, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras

from tensorflow_privacy.privacy.fast_gradient_clipping import clip_grads as _clip_grads
from tensorflow_privacy.privacy.fast_gradient_clipping import gradient_clipping_utils as _gc_utils
from tensorflow_privacy.privacy.fast_gradient_clipping import layer_registry as _lr
from tensorflow_privacy.privacy.fast_gradient_clipping.registry_functions import einsum_dense as _einsum
from tensorflow_privacy.privacy.fast_gradient_clipping.registry_functions import \
    layer_normalization as _layer_norm
from tensorflow_privacy.privacy.fast_gradient_clipping.registry_functions import \
    multi_head_attention as _mha

#: Layers tensorflow-privacy can compute per-example gradient norms for without materialising them.
GHOST_LAYERS = {
    "Dense": keras.layers.Dense,
    "Embedding": keras.layers.Embedding,
    "LayerNormalization": keras.layers.LayerNormalization,
    "MultiHeadAttention": keras.layers.MultiHeadAttention,
    "EinsumDense": keras.layers.EinsumDense,
}


def layer_registry() -> "_lr.LayerRegistry":
    """tf-privacy's default registry (Dense, Embedding) plus LayerNormalization, MultiHeadAttention, EinsumDense."""
    reg = _lr.make_default_layer_registry()
    reg.insert(keras.layers.LayerNormalization, _layer_norm.layer_normalization_computation)
    reg.insert(keras.layers.MultiHeadAttention, _mha.multi_head_attention_layer_computation)
    reg.insert(keras.layers.EinsumDense, _einsum.einsum_layer_computation)
    return reg


def is_functional(model) -> bool:
    """Whether ``model`` has the internal node graph tf-privacy's forward pass walks (Functional/Sequential)."""
    return _gc_utils.has_internal_compute_graph(model) and hasattr(model, "_nodes_by_depth")


def ghost_clip_weights(core: keras.Model, registry, x, per_example_loss_fn: Callable, l2_norm_clip: float,
                       variables: Sequence[tf.Variable]) -> Tuple[List[tf.Tensor], tf.Tensor, tf.Tensor, tf.Tensor]:
    """Clipped summed gradient with one forward pass and two backward passes ("ghost clipping").

    The first backward pass gives per-example gradient norms from layer pre-activations (no per-example
    gradients are materialised); the second differentiates ``Σ_i c_i·loss_i`` with ``c_i = min(1, C/‖g_i‖)``
    held constant, whose gradient is exactly the sum of the clipped per-example gradients.

    Args:
        core: a functional Keras model producing logits.
        registry: from :func:`layer_registry`.
        x: a batch of inputs.
        per_example_loss_fn: ``fn(logits) -> [B]`` per-example losses (weights already applied).
        l2_norm_clip: C.
        variables: the trainable variables to differentiate.

    Returns:
        ``(clipped_grad_sum, per_example_losses, logits, norms)``.
    """
    tape = tf.GradientTape(persistent=True, watch_accessed_variables=False)
    generator = _clip_grads.get_registry_generator_fn(tape, registry, None)
    with tape:
        tape.watch(variables)
        logits, gen_outputs = _gc_utils.model_forward_pass(core, x, generator_fn=generator)
        losses = per_example_loss_fn(logits)
        summed = tf.reduce_sum(losses)
    outs = [t for t in gen_outputs if t is not None]
    base_vars = [t[0] for t in outs]
    grads = tape.gradient(summed, base_vars, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    sqr = tf.stack([fn(g) for g, (_, fn, _) in zip(grads, outs)], axis=1)
    norms = tf.sqrt(tf.reduce_sum(sqr, axis=1))
    weights = tf.stop_gradient(_clip_grads.compute_clip_weights(l2_norm_clip, norms))
    with tape:
        weighted = tf.reduce_sum(weights * losses)
    clipped = tape.gradient(weighted, list(variables), unconnected_gradients=tf.UnconnectedGradients.ZERO)
    del tape
    return clipped, losses, logits, norms


def vectorized_dp_sgd_optimizer(l2_norm_clip: float, noise_multiplier: float, num_microbatches, learning_rate):
    """tensorflow-privacy's ``VectorizedDPKerasSGDOptimizer`` (the baseline in benchmarks/dp_overhead.py)."""
    from tensorflow_privacy.privacy.optimizers import dp_optimizer_keras_vectorized as _vec

    return _vec.VectorizedDPKerasSGDOptimizer(l2_norm_clip=l2_norm_clip, noise_multiplier=noise_multiplier,
                                              num_microbatches=num_microbatches, learning_rate=learning_rate)
