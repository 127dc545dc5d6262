"""``PruningScheduler``: magnitude pruning of any Keras model's kernels by masks, as a callback.

tfmot's ``prune_low_magnitude`` wraps layers and so needs a Sequential/Functional model; a
subclassed model (``TFBertForSequenceClassification``, a ``keras.Model`` subclass) cannot be
cloned that way. This callback needs nothing from the model but its variables: after every
optimizer step it multiplies each selected kernel by a 0/1 mask, and recomputes the masks on
the schedule's update steps (per-kernel magnitude, Zhu & Gupta 2017; or ``N:M``, Mishra et
al. 2021). Because it acts *after* the update, it composes with any gradient computation,
including DP-SGD: zeroing weights is post-processing of the privatized parameters.

Example:
    >>> sched = SparsitySchedule("polynomial", target=0.8, begin_step=0, end_step=200, frequency=20)
    >>> model.fit(ds, epochs=3, callbacks=[PruningScheduler(sched)])
    >>> kernel_sparsity(model)["global"]        # ~0.8
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfresp.compression.masks import magnitude_mask, name_selected, nm_mask, sparsity
from tfresp.compression.schedule import SparsitySchedule


def is_kernel(var) -> bool:
    """A weight matrix/tensor to prune: named ``*kernel`` and of rank >= 2 (not biases, norms, embeddings)."""
    leaf = var.name.split("/")[-1].split(":")[0]
    return leaf.endswith("kernel") and len(var.shape) >= 2


def select_kernels(variables, include=None, exclude=None, structured: Optional[Sequence[int]] = None):
    """``(selected, skipped)``: kernels to prune and ``(name, reason)`` for kernels left dense."""
    selected, skipped, seen = [], [], set()
    for v in variables:
        if id(v) in seen or not is_kernel(v):
            continue
        seen.add(id(v))
        if not name_selected(v.name, include, exclude):
            skipped.append((v.name, "excluded by compression.include/exclude"))
        else:
            selected.append(v)
    return selected, skipped


def kernel_sparsity(model_or_variables, include=None, exclude=None) -> Dict[str, object]:
    """Per-kernel and global (parameter-weighted) sparsity of every kernel of a model."""
    variables = (model_or_variables.weights if hasattr(model_or_variables, "weights")
                 else list(model_or_variables))
    per_layer, zeros, total, seen = {}, 0, 0, set()
    for v in variables:
        if id(v) in seen or not is_kernel(v):
            continue
        seen.add(id(v))
        w = v.numpy() if hasattr(v, "numpy") else np.asarray(v)
        per_layer[v.name.replace(":0", "")] = sparsity(w)
        zeros += int(w.size - np.count_nonzero(w))
        total += int(w.size)
    return {"global": float(zeros / total) if total else 0.0, "per_layer": per_layer}


class PruningScheduler(keras.callbacks.Callback):
    """Mask-based magnitude pruning for any model (the subclassed-model path of ``compression.prune``).

    Args:
        schedule: a :class:`~tfresp.compression.schedule.SparsitySchedule` (when/how much).
        structured: ``(n, m)`` for ``N:M`` sparsity (e.g. ``(2, 4)``); the schedule's ``target``
            is then ignored and only its ``begin_step``/``frequency``/``end_step`` apply.
        include: layer/variable-name globs to prune (default all kernels).
        exclude: globs never pruned.
        model: the model whose kernels are pruned (default: the model being fit).

    Logs ``prune/sparsity`` (global kernel sparsity) at the end of every epoch.
    """

    def __init__(self, schedule: SparsitySchedule, *, structured: Optional[Sequence[int]] = None,
                 include: Optional[List[str]] = None, exclude: Optional[List[str]] = None,
                 model: Optional[keras.Model] = None):
        super().__init__()
        self.schedule = schedule
        self.structured = tuple(structured) if structured else None
        self.include = include
        self.exclude = exclude
        self._target_model = model
        self.kernels: List[tf.Variable] = []
        self.skipped: List[tuple] = []
        self._masks: List[tf.Variable] = []
        self._apply_fn = None
        self._active = False
        self._ready = False
        self.completed_early = False

    # -- hooks ------------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._ready = False
        self._init_targets()

    def on_train_batch_end(self, batch, logs=None):
        if not self._ready:  # a subclassed model is only built by its first batch
            self._init_targets()
        if self._ready:
            self._maybe_update(self._step())

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["prune/sparsity"] = kernel_sparsity(self.kernels)["global"] if self.kernels else 0.0

    def on_train_end(self, logs=None):
        step = self._step()
        if (self._ready and not self.structured and self.kernels
                and self.schedule.sparsity(step) < self.schedule.target - 1e-9):
            # Fewer steps ran than the schedule expected (early stopping, Poisson batches): honour the
            # target anyway rather than ship a less sparse model than the config and report claim.
            logging.getLogger("tfresp").warning(
                "tfresp: pruning schedule ended at step %d before reaching %.2f sparsity (end_step %d); "
                "pruning to the target now, without fine-tuning", step, self.schedule.target, self.schedule.end_step)
            self.update_masks(self.schedule.end_step)
            self.completed_early = True
        if self._active:
            self._apply()

    # -- internals --------------------------------------------------------------------------
    def _init_targets(self) -> None:
        model = self._target_model or self.model
        variables = model.trainable_variables
        if not variables:
            return
        self.kernels, self.skipped = select_kernels(variables, self.include, self.exclude, self.structured)
        self._apply_fn = None  # its graph holds the previous kernels and masks
        if len(self._masks) != len(self.kernels) or any(
                m.shape != k.shape for m, k in zip(self._masks, self.kernels)):
            self._masks = [tf.Variable(tf.ones(k.shape, k.dtype), trainable=False, name="prune_mask")
                           for k in self.kernels]
            self._active = False
        self._ready = True
        step = self._step()
        if step >= self.schedule.begin_step and not self._active and not self.schedule.update_due(step):
            self.update_masks(step)  # built late (subclassed model): catch up with the schedule now
        self._maybe_update(step)

    def _step(self) -> int:
        opt = getattr(self.model, "optimizer", None)
        it = getattr(opt, "iterations", None)
        return int(it.numpy()) if it is not None else 0

    def _maybe_update(self, step: int) -> None:
        if self.schedule.update_due(step):
            self.update_masks(step)
        if self._active:
            self._apply()

    def update_masks(self, step: int) -> None:
        """Recompute every mask from the current (already masked) kernel magnitudes."""
        target = self.schedule.sparsity(step)
        for k, m in zip(self.kernels, self._masks):
            w = k.numpy()
            if self.structured:
                new = nm_mask(w, *self.structured)
            else:
                # Keep zeros already pruned (magnitude 0 sorts first), so sparsity never decreases.
                new = magnitude_mask(w, target)
            m.assign(new.astype(k.dtype.as_numpy_dtype))
        self._active = bool(self.kernels) and (self.structured is not None or target > 0)

    def _apply(self) -> None:
        if not self.kernels:
            return
        if self._apply_fn is None:  # reset by _init_targets whenever the kernels or masks are chosen again
            # One argument-free graph over the current (kernel, mask) pairs: called after every step, and a
            # tf.function taking the variables as arguments spent ~1 ms a call flattening them (measured on the
            # quickstart: 0.6 s of a 4 s fit), the argument-free call a tenth of that.
            pairs = tuple(zip(self.kernels, self._masks))

            @tf.function(autograph=False)
            def apply():
                for k, m in pairs:
                    k.assign(k * m)

            self._apply_fn = apply
        self._apply_fn()

    def masks(self) -> Dict[str, np.ndarray]:
        return {k.name: m.numpy() for k, m in zip(self.kernels, self._masks)}
