"""Adversarial debiasing with a gradient-reversal layer, kept per-example so DP clipping covers it.

An adversary head predicts the sensitive group from the model's logit margin (plus the label
for equalized odds / equal opportunity, as in Zhang, Lemoine & Mitchell, "Mitigating unwanted
biases with adversarial learning", AIES 2018). Between the model and the adversary sits a
gradient-reversal layer (Ganin & Lempitsky, "Unsupervised domain adaptation by
backpropagation", ICML 2015): one loss, one optimizer step — the adversary descends its
cross-entropy while the model ascends it, scaled by ``fairness.weight``.

The adversary's variables live in an identity layer appended to the core model
(:class:`AdversaryHolder`), so they are part of ``core.trainable_variables``: the optimizer
updates them and, under DP-SGD, their gradients are clipped and noised with the rest.
The exported model is unchanged (the holder is the identity on logits).
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

HOLDER_NAME = "fair_adversary"


@tf.custom_gradient
def _reverse(x, scale):
    def grad(dy):
        return -scale * dy, tf.zeros_like(scale)

    return tf.identity(x), grad


def gradient_reversal(x: tf.Tensor, scale: float) -> tf.Tensor:
    """Identity forward; multiplies the incoming gradient by ``-scale`` backward."""
    return _reverse(x, tf.constant(scale, x.dtype))


class AdversaryHolder(keras.layers.Layer):
    """Identity on logits that owns the adversary network (so its weights are core weights).

    Args:
        n_groups: number of sensitive groups the adversary classifies.
        input_dim: width of the adversary input (1 or 4, see :func:`adversary_features`).
        hidden: hidden width (0: logistic adversary).
    """

    def __init__(self, n_groups: int, input_dim: int, hidden: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.n_groups, self.input_dim, self.hidden = int(n_groups), int(input_dim), int(hidden)
        layers = [keras.layers.Dense(self.hidden, activation="relu", name="adv_hidden")] if self.hidden else []
        layers.append(keras.layers.Dense(self.n_groups, name="adv_logits"))
        self.adversary = keras.Sequential(layers, name="adversary")
        self.adversary.build((None, self.input_dim))

    def call(self, logits):
        return tf.identity(logits)

    def get_config(self):
        return {**super().get_config(), "n_groups": self.n_groups, "input_dim": self.input_dim,
                "hidden": self.hidden}


class _CoreWithAdversary(keras.Model):
    """Fallback for subclassed cores (no symbolic inputs): core then holder."""

    def __init__(self, core, holder, **kwargs):
        super().__init__(name=core.name, **kwargs)
        self.inner, self.holder = core, holder

    def call(self, inputs, training=False):
        return self.holder(self.inner(inputs, training=training))


def attach(core: keras.Model, holder: AdversaryHolder) -> keras.Model:
    """Append ``holder`` to ``core`` (flat functional graph when possible)."""
    if getattr(core, "_is_graph_network", False) and core.inputs:
        out = holder(core.outputs[0])
        return keras.Model(core.inputs, out, name=core.name)
    return _CoreWithAdversary(core, holder)


def adversary_features(logits: tf.Tensor, y: tf.Tensor, constraint: str, positive_index: int = 1) -> tf.Tensor:
    """Adversary input: the logit margin ``s`` (demographic parity) or ``[s, s*y, s*(1-y), y]`` (odds)."""
    logits = tf.cast(logits, tf.float32)
    others = tf.reduce_logsumexp(tf.concat([logits[:, :positive_index], logits[:, positive_index + 1:]], 1), 1)
    s = (logits[:, positive_index] - others)[:, None]
    if constraint == "demographic_parity":
        return s
    yf = tf.cast(tf.equal(tf.cast(y, tf.int32), positive_index), tf.float32)[:, None]
    # y itself lets the adversary model P(group | y), so only dependence on s *within* a label slice
    # (the equalized-odds violation) is left for it to exploit
    return tf.concat([s, s * yf, s * (1.0 - yf), yf], axis=1)


def make_adversarial_loss(holder: AdversaryHolder, constraint: str, weight: float, positive_index: int = 1):
    """Per-example loss term ``fn(model, x, y, logits, extras, training) -> [B]``.

    Equal opportunity only asks for independence within ``y = positive``, so the adversary
    term is masked to those rows.
    """

    def adversarial_loss(model, x, y, logits, extras, training):
        feats = gradient_reversal(adversary_features(logits, y, constraint, positive_index), weight)
        adv_logits = holder.adversary(feats, training=training)
        g = tf.cast(extras["fair_group"], tf.int32)
        ce = keras.losses.sparse_categorical_crossentropy(g, adv_logits, from_logits=True)
        if constraint == "equal_opportunity":
            ce = ce * tf.cast(tf.equal(tf.cast(y, tf.int32), positive_index), ce.dtype)
        return ce

    adversarial_loss.__name__ = "fair_adversarial"
    return adversarial_loss
