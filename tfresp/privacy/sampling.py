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

from tfresp.run.training import steps_per_epoch  # noqa: F401  (``ceil(n / B)`` Poisson draws: one expected pass)


#: gaps drawn per chunk: the expected sample size plus this many standard deviations (tests lower it to make the
#: loop draw several chunks)
_CHUNK_SIGMAS = 8.0


def poisson_indices(n: int, sample_rate: float, seed) -> tf.Tensor:
    """The sorted row indices of one Poisson sample of ``range(n)``: each row in with probability ``q``, independently.

    O(n·q) work, not O(n): the gaps between consecutive members of an i.i.d. Bernoulli(q) sequence are i.i.d.
    Geometric(q) on {1, 2, ...}, so the sample is the running sum of geometric gaps that stays below ``n`` (the
    same distribution as ``uniform([n]) < q``, which costs a uniform per row: 10M rows, B = 256 makes an epoch
    O(n²/B)). A gap is ``floor(log(1 - U) / log(1 - q)) + 1`` with ``U`` uniform in float64 (53 random bits). Gaps
    are drawn in chunks of ``n·q + 8·sd + 16`` (one chunk almost always reaches ``n``; the loop draws more until the
    running sum passes ``n``, so the sample is never cut short).

    Args:
        n: number of rows.
        sample_rate: ``q`` in (0, 1].
        seed: a ``[2]`` int64 stateless seed (tf.random.stateless_*): secret and fresh for every draw.
    """
    q = float(sample_rate)
    if q >= 1.0:
        return tf.range(n, dtype=tf.int64)
    mean = n * q
    chunk = int(min(n, max(1, math.ceil(mean + _CHUNK_SIGMAS * math.sqrt(mean * (1.0 - q)) + 16))))
    log1mq = tf.constant(math.log1p(-q), tf.float64)
    seed = tf.convert_to_tensor(seed, tf.int64)
    limit = tf.constant(float(n + 1), tf.float64)  # a gap past n ends the sample: clip before the int cast

    def more(j, last, taken):
        return last < n - 1

    def draw(j, last, taken):
        u = tf.random.stateless_uniform([chunk], seed=tf.random.experimental.stateless_fold_in(seed, j),
                                        dtype=tf.float64)
        gaps = tf.minimum(tf.floor(tf.math.log1p(-u) / log1mq) + 1.0, limit)
        pos = last + tf.cumsum(tf.cast(gaps, tf.int64))
        return j + 1, pos[-1], tf.concat([taken, pos[pos < n]], 0)

    _, _, taken = tf.while_loop(
        more, draw, (tf.constant(0, tf.int64), tf.constant(-1, tf.int64), tf.zeros([0], tf.int64)),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([]), tf.TensorShape([None])))
    return taken


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

    def draw(s):
        idx = poisson_indices(n, sample_rate, tf.stack([s, tf.constant(seed, tf.int64)]))
        return tf.nest.map_structure(lambda t: tf.gather(t, idx), data)

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(int(steps_per_epoch))
    return seeds.map(draw, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
