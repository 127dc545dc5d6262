"""MinDiff-style MMD penalty between the prediction distributions of groups.

For each label slice the constraint needs (demographic parity: all rows; equal opportunity:
``y = 1``; equalized odds: ``y = 1`` and ``y = 0``) and each group ``g`` present in the batch,
the squared maximum mean discrepancy (Gretton et al., JMLR 2012) with a Gaussian kernel between
the positive-class probabilities of ``g`` and of the rest of the slice is added to the loss,
as in MinDiff (Prost, Qian, Chen, Chi, Chen & Beutel, "Toward a better trade-off between
performance and fairness with kernel-based distribution matching", 2019).

The penalty is a *batch* quantity: it cannot be clipped per example, so it is refused under
DP-SGD (see :class:`tfresp.fairness.concern.Fairness`).
"""
from __future__ import annotations

import tensorflow as tf

SLICES = {"demographic_parity": (None,), "equal_opportunity": (1,), "equalized_odds": (1, 0)}


def masked_mmd2(scores: tf.Tensor, a: tf.Tensor, b: tf.Tensor, bandwidth: float) -> tf.Tensor:
    """Biased MMD² between the ``scores`` selected by float masks ``a`` and ``b`` (0 if either is empty).

    Example:
        >>> masked_mmd2(tf.constant([.1, .9]), tf.constant([1., 0.]), tf.constant([0., 1.]), 0.1)
    """
    d = scores[:, None] - scores[None, :]
    k = tf.exp(-tf.square(d) / (2.0 * bandwidth ** 2))
    na, nb = tf.reduce_sum(a), tf.reduce_sum(b)
    kaa = tf.reduce_sum(k * a[:, None] * a[None, :]) / tf.maximum(na * na, 1.0)
    kbb = tf.reduce_sum(k * b[:, None] * b[None, :]) / tf.maximum(nb * nb, 1.0)
    kab = tf.reduce_sum(k * a[:, None] * b[None, :]) / tf.maximum(na * nb, 1.0)
    both = tf.cast((na > 0) & (nb > 0), scores.dtype)
    return both * (kaa + kbb - 2.0 * kab)


def make_mmd_loss(constraint: str, n_groups: int, weight: float, bandwidth: float, positive_index: int = 1):
    """A batch loss ``fn(model, x, y, logits, extras, training) -> scalar`` for ResponsibleModel.

    Groups come from ``extras["fair_group"]`` (int ids batched with the data).
    """
    slices = SLICES[constraint]

    def mmd_loss(model, x, y, logits, extras, training):
        scores = tf.nn.softmax(tf.cast(logits, tf.float32))[:, positive_index]
        g = tf.cast(extras["fair_group"], tf.int32)
        y_ = tf.cast(y, tf.int32)
        total = 0.0
        terms = 0
        for label in slices:
            in_slice = tf.ones_like(scores) if label is None else tf.cast(tf.equal(y_, label), tf.float32)
            for k in range(n_groups if n_groups > 2 else 1):
                a = in_slice * tf.cast(tf.equal(g, k), tf.float32)
                b = in_slice * tf.cast(tf.not_equal(g, k), tf.float32)
                total += masked_mmd2(scores, a, b, bandwidth)
                terms += 1
        return weight * total / float(terms)

    mmd_loss.__name__ = "fair_mmd"
    return mmd_loss
