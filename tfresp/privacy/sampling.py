"""Poisson sampling for DP-SGD: every example joins each batch independently with probability ``q``.

The subsampled-Gaussian accounting (Abadi et al. 2016; Mironov et al. 2019) assumes exactly this, so
batches have variable size (possibly empty) and each epoch is ``ceil(n / B)`` such draws, not a
permutation.

Training goes through :meth:`tfresp.privacy.dpsgd.DPSGD.dataset`, which adds what the DP training step checks
(fresh secret randomness per call, draw tags, static shapes); :func:`poisson_dataset` is the bare sampler for
low-level experiments with a raw ``gradient_fn`` (a model with a ``DPSGD`` refuses its batches).
"""
from __future__ import annotations

import math
from typing import Dict

import numpy as np
import tensorflow as tf


def poisson_dataset(x, y, extras: Dict[str, np.ndarray], sample_rate: float, steps_per_epoch: int,
                    seed: int = 0) -> tf.data.Dataset:
    """``(x, y, extras)`` batches, each a fresh Poisson sample of the rows (new draws every epoch).

    Args:
        x: model inputs (array or dict of arrays, first axis = rows).
        y: labels ``[n]``.
        extras: per-row arrays (``sample_weight`` is added as ones when missing).
        sample_rate: ``q`` in (0, 1].
        steps_per_epoch: batches per pass over the dataset iterator.
        seed: reproducibility; each epoch re-draws (``rerandomize_each_iteration``).

    Example:
        >>> ds = poisson_dataset(x, y, {}, sample_rate=256 / len(y), steps_per_epoch=math.ceil(len(y) / 256))
    """
    n = len(y)
    extras = dict(extras)
    extras.setdefault("sample_weight", np.ones(n, dtype=np.float32))
    data = tf.nest.map_structure(tf.convert_to_tensor, (x, y, extras))
    q = tf.constant(float(sample_rate), tf.float32)

    def draw(s):
        u = tf.random.stateless_uniform([n], seed=tf.stack([s, tf.constant(seed, tf.int64)]))
        idx = tf.where(u < q)[:, 0]
        return tf.nest.map_structure(lambda t: tf.gather(t, idx), data)

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(int(steps_per_epoch))
    return seeds.map(draw, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(n: int, batch_size: int) -> int:
    """``ceil(n / B)``: the number of Poisson draws that make one expected pass over ``n`` rows."""
    return int(math.ceil(n / batch_size))
