"""Optimizer, learning-rate schedule and standard callbacks from ``config.train``."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras


class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to ``peak`` over ``warmup_steps`` then linear decay to 0 at ``total_steps``."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak, self.warmup_steps, self.total_steps = float(peak), int(warmup_steps), max(int(total_steps), 1)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * (step + 1.0) / max(self.warmup_steps, 1)
        decay = self.peak * tf.maximum(0.0, (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1))
        return tf.where(step < self.warmup_steps, warm, decay)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


def steps_per_epoch(n: int, batch_size: int) -> int:
    """``ceil(n / B)``: the steps of one pass (with Poisson sampling, one expected pass) over ``n`` rows; the one
    definition the run, the LR and pruning schedules, the DP accountant and ``make_private`` use."""
    return int(math.ceil(n / batch_size))


def make_optimizer(train_cfg, steps_per_epoch: int):
    lr = train_cfg.learning_rate
    total = steps_per_epoch * train_cfg.epochs
    if train_cfg.warmup > 0:
        lr = WarmupLinearDecay(lr, int(math.ceil(train_cfg.warmup * total)), total)
    kw = {"learning_rate": lr}
    if train_cfg.clipnorm:
        kw["global_clipnorm"] = train_cfg.clipnorm
    if train_cfg.optimizer == "sgd":
        return keras.optimizers.SGD(momentum=0.9, **kw)
    if train_cfg.optimizer == "adamw":
        return keras.optimizers.AdamW(weight_decay=train_cfg.weight_decay or 0.01, **kw)
    return keras.optimizers.Adam(**kw)


def class_weights(y: np.ndarray, num_classes: int, counts: Optional[np.ndarray] = None) -> np.ndarray:
    """Per-row weights ``n / (k * count(class))`` (scikit-learn's 'balanced').

    ``counts``: class counts to use instead of the exact ones (under DP, the noisy counts released by the
    preprocessing histogram, so the weights are post-processing of a DP release).
    """
    exact = counts is None
    counts = np.bincount(y, minlength=num_classes).astype(np.float64) if exact else np.asarray(counts, np.float64)
    w = (len(y) if exact else counts.sum()) / (num_classes * np.maximum(counts, 1))
    return w[y].astype(np.float32)


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """``keras.callbacks.TensorBoard`` writing per epoch (``update_freq="epoch"``, no profiling, no graph).

    At ``update_freq="epoch"`` the batch hook records nothing, but tf_keras still calls it (another callback's
    batch hook makes every callback's run) and it calls ``tf.summary.scalar`` for every log of every batch:
    measured 0.6 s of the 4-5 s DP quickstart fit. This skips it; epoch summaries are unchanged.
    """

    def __init__(self, log_dir: str):
        super().__init__(log_dir=log_dir, profile_batch=0, write_graph=False, update_freq="epoch")

    def on_train_batch_end(self, batch, logs=None):
        return None
