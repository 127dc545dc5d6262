"""``TfrespModel``: the ``keras.Model`` subclass every tfresp run trains.

It wraps a *core* model (functional Keras model producing logits) and composes the
concerns' contributions in its ``train_step`` without copying the Keras loop:

    x' = input_transform(x)                       # robustness (adversarial examples), optional
    per_example = CE(y, core(x')) * w + Σ terms    # fairness / robustness per-example terms
    loss = mean(per_example) + Σ batch terms       # batch-level terms (refused under DP)
    grads = gradient_fn(...)  or  tape.gradient    # privacy replaces the gradient computation

The dataset yields ``(x, y, extras)`` where ``extras`` is a dict holding at least
``sample_weight`` (and e.g. sensitive group ids for fairness losses).
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras


class TfrespModel(keras.Model):
    """Trains ``core`` with composable loss terms and an optional private gradient function.

    Args:
        core: a Keras model mapping inputs to logits ``[batch, num_classes]``.
    """

    def __init__(self, core: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.core = core
        self.per_example_losses = []
        self.batch_losses = []
        self.input_transform = None
        self.gradient_fn = None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.acc_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    def call(self, inputs, training=False):
        return self.core(inputs, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.acc_tracker]

    # -- losses ---------------------------------------------------------------------------
    @staticmethod
    def unpack(data):
        if isinstance(data, (tuple, list)):
            if len(data) == 3:
                return data[0], data[1], data[2]
            if len(data) == 2:
                return data[0], data[1], {}
        return data, None, {}

    def base_per_example_loss(self, y, logits):
        return keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)

    def per_example_loss(self, x, y, extras, training=True):
        """Per-example training objective ``[B]`` (everything DP clipping must cover)."""
        if self.input_transform is not None:
            x = self.input_transform(self, x, y, extras)
        logits = self.core(x, training=training)
        return self.weighted_with_terms(self.base_per_example_loss(y, logits), x, y, logits, extras, training), logits

    def weighted_with_terms(self, loss, x, y, logits, extras, training):
        """Apply ``extras['sample_weight']`` to a per-example loss ``[B]`` and add the concerns' per-example terms."""
        w = extras.get("sample_weight") if isinstance(extras, dict) else None
        if w is not None:
            loss = loss * tf.cast(w, loss.dtype)
        for term in self.per_example_losses:
            loss = loss + tf.cast(term(self, x, y, logits, extras, training), loss.dtype)
        return loss

    def total_loss(self, x, y, extras, training=True):
        per_ex, logits = self.per_example_loss(x, y, extras, training)
        loss = tf.reduce_mean(per_ex)
        for term in self.batch_losses:
            loss = loss + tf.cast(term(self, x, y, logits, extras, training), loss.dtype)
        if self.core.losses:
            loss = loss + tf.add_n(self.core.losses)
        return loss, logits

    # -- steps ----------------------------------------------------------------------------
    def gradient_step(self, x, y, extras):
        """Compute gradients (privately when ``gradient_fn`` is set), apply them; return ``(loss, logits)``."""
        if self.gradient_fn is not None:
            loss, grads, logits = self.gradient_fn(self, x, y, extras)
        else:
            with tf.GradientTape() as tape:
                loss, logits = self.total_loss(x, y, extras, training=True)
                # Under tf.distribute the optimizer SUMs the replicas' gradients (all-reduce): divide the
                # per-replica mean by the replica count so the update is the global-batch mean's.
                replicas = tf.distribute.get_strategy().num_replicas_in_sync
                scaled = loss / replicas if replicas > 1 else loss
                scaled = self.optimizer.get_scaled_loss(scaled) if hasattr(self.optimizer, "get_scaled_loss") else scaled
            grads = tape.gradient(scaled, self.core.trainable_variables)
            if hasattr(self.optimizer, "get_unscaled_gradients"):
                grads = self.optimizer.get_unscaled_gradients(grads)
        self.optimizer.apply_gradients(
            [(g, v) for g, v in zip(grads, self.core.trainable_variables) if g is not None])
        return loss, logits

    def train_step(self, data):
        x, y, extras = self.unpack(data)
        loss, logits = self.gradient_step(x, y, extras)
        self.loss_tracker.update_state(loss)
        if logits is not None:
            self.acc_tracker.update_state(y, logits)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y, extras = self.unpack(data)
        logits = self.core(x, training=False)
        loss = tf.reduce_mean(self.base_per_example_loss(y, logits))
        self.loss_tracker.update_state(loss)
        self.acc_tracker.update_state(y, logits)
        return {m.name: m.result() for m in self.metrics}

    def predict_step(self, data):
        x, _, _ = self.unpack(data)
        return self.core(x, training=False)
