"""Adapter around tensorflow-model-optimization (tfmot 0.8): every tfmot call tfresp makes is here.

tfmot works on Sequential/Functional Keras-2 (``tf_keras``) models only; it reads the private
``_is_graph_network`` flag, and raises on the first unsupported layer. This module hides those
quirks: it wraps only the layers tfmot supports and returns the names of the rest so the
report can list them instead of crashing.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import tf_keras as keras

from tfresp.compression.masks import name_selected, nm_applicable
from tfresp.compression.schedule import SparsitySchedule


def _tfmot():
    import tensorflow_model_optimization as tfmot  # heavy import: only when compression is on

    return tfmot


def is_graph_model(model) -> bool:
    """Sequential or Functional (what tfmot can clone); subclassed models are not."""
    return isinstance(model, keras.Sequential) or bool(getattr(model, "_is_graph_network", False))


def _tfmot_schedule(schedule: SparsitySchedule):
    s = _tfmot().sparsity.keras
    if schedule.kind == "constant":
        return s.ConstantSparsity(schedule.target, begin_step=schedule.begin_step, end_step=-1,
                                  frequency=schedule.frequency)
    return s.PolynomialDecay(initial_sparsity=schedule.initial, final_sparsity=schedule.target,
                             begin_step=schedule.begin_step, end_step=max(schedule.end_step, schedule.begin_step + 1),
                             power=schedule.power, frequency=schedule.frequency)


def prune(core: keras.Model, schedule: SparsitySchedule, *, structured: Optional[Sequence[int]] = None,
          include=None, exclude=None) -> Tuple[keras.Model, List[str], List[Tuple[str, str]]]:
    """Wrap the selected, supported layers of a graph model in ``prune_low_magnitude``.

    Nested Sequential/Functional models (a ``keras.applications`` backbone used as a layer) are cloned the
    same way, so their layers are pruned too (named ``outer/inner``); a nested subclassed model is skipped with
    its reason.

    Returns:
        ``(pruned_model, wrapped_layer_names, [(skipped_layer_name, reason), ...])``.
    """
    tfmot = _tfmot()
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry, prunable_layer

    params = {"pruning_schedule": _tfmot_schedule(schedule)}
    if structured:
        params["sparsity_m_by_n"] = tuple(structured)
    wrapped, skipped = [], []

    def clone_fn(prefix):
        def clone(layer):
            if isinstance(layer, keras.Model):  # a nested model (e.g. a keras.applications backbone)
                if is_graph_model(layer):  # clone it too, so its layers are wrapped like top-level ones
                    return keras.models.clone_model(layer, clone_function=clone_fn(f"{prefix}{layer.name}/"))
                if layer.weights:
                    skipped.append((prefix + layer.name, f"nested subclassed {layer.__class__.__name__}: tfmot can "
                                    "only clone Sequential/Functional models; use compression.method: mask"))
                return layer
            name = prefix + layer.name
            kernel = getattr(layer, "kernel", None)
            if kernel is None or isinstance(layer, keras.layers.InputLayer):
                if layer.weights and not isinstance(layer, keras.layers.InputLayer):
                    skipped.append((name, "no kernel to prune"))
                return layer
            if not name_selected(name, include, exclude):  # "backbone" or "conv1" selects "backbone/conv1"
                skipped.append((name, "excluded by compression.include/exclude"))
            elif not (prune_registry.PruneRegistry.supports(layer)
                      or isinstance(layer, prunable_layer.PrunableLayer)):
                skipped.append((name, f"{layer.__class__.__name__} is not supported by tfmot pruning"))
            elif structured and not nm_applicable(kernel.shape, structured[1]):
                skipped.append((name, f"input dimension {int(kernel.shape[-2])} is not a multiple of "
                                      f"{structured[1]}"))
            else:
                wrapped.append(name)
                # The wrapper reuses the trained layer (and its variables), as tfmot itself does.
                return tfmot.sparsity.keras.prune_low_magnitude(layer, **params)
            return layer

        return clone

    pruned = keras.models.clone_model(core, clone_function=clone_fn(""))
    return pruned, wrapped, skipped


def update_step_callback():
    """tfmot's ``UpdatePruningStep`` (advances the pruning step, re-masks at epoch end)."""
    return _tfmot().sparsity.keras.UpdatePruningStep()


def has_pruning_wrappers(model) -> bool:
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

    return bool(pruning_wrapper.collect_prunable_layers(model))


def strip(model: keras.Model) -> keras.Model:
    """Remove pruning wrappers (weights keep their zeros); a no-op for models without wrappers."""
    if not is_graph_model(model) or not has_pruning_wrappers(model):
        return model
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

    # Re-mask first: the last optimizer step (or EarlyStopping's weight restore) may have left
    # non-zeros where the mask is 0.
    for layer in pruning_wrapper.collect_prunable_layers(model):
        layer.pruning_obj.weight_mask_op()
    return _tfmot().sparsity.keras.strip_pruning(model)


def quantize_aware(core: keras.Model) -> Tuple[keras.Model, List[str], List[Tuple[str, str]]]:
    """Quantization-aware training wrappers (Jacob et al. 2018) on every supported layer.

    Layers the default 8-bit scheme does not support stay float and are returned by name.

    Returns:
        ``(qat_model, quantized_layer_names, [(unsupported_layer_name, class_name), ...])``.
    """
    tfmot = _tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as reg)

    registry = reg.Default8BitQuantizeRegistry()
    q = tfmot.quantization.keras
    quantized, unsupported = [], []

    def annotate(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        if registry.supports(layer):
            quantized.append(layer.name)
            return q.quantize_annotate_layer(layer)
        unsupported.append((layer.name, layer.__class__.__name__))
        return layer

    annotated = keras.models.clone_model(core, clone_function=annotate)
    with q.quantize_scope():
        qat = q.quantize_apply(annotated)
    return qat, quantized, unsupported
