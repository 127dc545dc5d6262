"""``Distiller``: knowledge distillation of a small student from a trained teacher.

Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network":

    L = alpha * CE(y, student(x)) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))

The ``T^2`` factor keeps the soft-target gradients on the same scale as the hard-label ones.
With ``alpha = 0`` no labels are used, which is what the privacy rule below needs.

Privacy rule: a student distilled from a DP teacher inherits the teacher's (epsilon, delta)
*only* if it never touches private data itself, i.e. it is trained on public/unlabeled inputs
with ``alpha = 0`` (post-processing of the DP teacher, as in PATE, Papernot et al. 2017).
Training it on the private training rows spends privacy that no accountant recorded.

Example:
    >>> d = Distiller(teacher=core, student=build_mlp(108, 2, [16]), temperature=4.0, alpha=0.5)
    >>> d.compile(optimizer="adam")
    >>> d.fit(ds, epochs=2)
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras


class Distiller(keras.Model):
    """Trains ``student`` to match ``teacher`` logits (softened by ``temperature``) and hard labels.

    Args:
        teacher: trained model mapping inputs to logits (frozen).
        student: model mapping the same inputs to logits (trained).
        temperature: softmax temperature ``T`` of the soft targets.
        alpha: weight of the hard-label cross-entropy; ``1 - alpha`` weights the distillation term.

    The dataset yields ``x``, ``(x, y)`` or ``(x, y, extras)``; without labels ``alpha`` must be 0.
    """

    def __init__(self, teacher: keras.Model, student: keras.Model, temperature: float = 4.0,
                 alpha: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"Invalid value for argument `temperature`. Received: temperature={temperature}. "
                             "Expected a positive float.")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Invalid value for argument `alpha`. Received: alpha={alpha}. Expected [0, 1].")
        self.teacher = teacher
        self.student = student
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.distill_tracker = keras.metrics.Mean(name="distill_loss")
        self.acc_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def metrics(self):
        return [self.loss_tracker, self.distill_tracker, self.acc_tracker]

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    @staticmethod
    def _unpack(data):
        if isinstance(data, (tuple, list)):
            return data[0], (data[1] if len(data) > 1 else None)
        return data, None

    def distillation_loss(self, teacher_logits, student_logits):
        """``T^2 * KL(softmax(t/T) || softmax(s/T))`` per example."""
        t = self.temperature
        p = tf.nn.softmax(teacher_logits / t)
        log_p = tf.nn.log_softmax(teacher_logits / t)
        log_q = tf.nn.log_softmax(student_logits / t)
        return (t ** 2) * tf.reduce_sum(p * (log_p - log_q), axis=-1)

    def train_step(self, data):
        x, y = self._unpack(data)
        if y is None and self.alpha > 0:
            raise ValueError("Distiller got unlabeled data but alpha > 0; set alpha=0 for unlabeled data")
        teacher_logits = tf.stop_gradient(self.teacher(x, training=False))
        with tf.GradientTape() as tape:
            s = self.student(x, training=True)
            kd = tf.reduce_mean(self.distillation_loss(teacher_logits, s))
            loss = (1.0 - self.alpha) * kd
            if y is not None and self.alpha > 0:
                ce = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, s, from_logits=True))
                loss = loss + self.alpha * ce
        grads = tape.gradient(loss, self.student.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.student.trainable_variables))
        self.loss_tracker.update_state(loss)
        self.distill_tracker.update_state(kd)
        if y is not None:
            self.acc_tracker.update_state(y, s)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y = self._unpack(data)
        s = self.student(x, training=False)
        kd = tf.reduce_mean(self.distillation_loss(self.teacher(x, training=False), s))
        self.distill_tracker.update_state(kd)
        if y is not None:
            self.acc_tracker.update_state(y, s)
        return {m.name: m.result() for m in self.metrics}
