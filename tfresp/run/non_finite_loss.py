"""``NonFiniteLossStop``: stop training cleanly when the loss stops being a finite number."""
from __future__ import annotations

import math

import tf_keras as keras

from tfresp.errors import TrainingDivergedError


class NonFiniteLossStop(keras.callbacks.Callback):
    """Like Keras' ``TerminateOnNaN``, but raises :class:`~tfresp.errors.TrainingDivergedError` (one line, exit 2)
    instead of finishing a run whose weights are NaN: nothing after training (audits, export, report) would be
    true of such a model. The failed run's checkpoints are discarded (resuming would diverge again).

    Example:
        >>> model.fit(x, y, callbacks=[tfresp.run.non_finite_loss.NonFiniteLossStop()])
    """

    def on_train_begin(self, logs=None):
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        value = float(loss)
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"`train`: the training loss became {value} at epoch {self._epoch + 1}, step {batch + 1}; the "
                "model's weights are no longer numbers, so the run was stopped and nothing was written. Received: "
                f"loss={value}. Remedy: lower train.learning_rate, set train.clipnorm, or rescale extreme feature "
                "values (data.numeric_ranges clips them)")
