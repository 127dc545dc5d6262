"""``ResponsibleModel``: a ``keras.Model`` that trains any Keras *core* model with
loss terms, an input transform and a gradient transform composed in its ``train_step``.

Slot order (fixed, as in Optax's ``chain``; the DP gradient transform comes last so nothing escapes clipping):

    x' = input_transform(model, x, y, extras)                # robustness (adversarial / noisy inputs), optional
    per_example = loss(y, core(x')) * w + Σ per-example terms
    loss = mean(per_example) + Σ batch terms                 # batch terms are refused under DP
    grads = gradient(model, x, y, extras) or tape.gradient   # DP-SGD replaces the gradient computation

A batch is Keras' ``x``, ``(x, y)`` or ``(x, y, sample_weight)``; the third element may instead be an *extras
dict* (``{"sample_weight": w, "group": g, ...}``) whose entries are batched with the rows and handed to terms
(group ids for fairness terms, for instance) but never to the core.

Example:
    >>> model = tfresp.ResponsibleModel(core, terms=[tfresp.terms.GaussianNoiseTraining(0.1)])
    >>> model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    >>> model.fit(x, y, sample_weight=w, epochs=3)
"""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfresp.errors import IncompatibleModelError

_PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")


def output_activation(core: keras.Model) -> Optional[str]:
    """``"softmax"``/``"sigmoid"`` (probabilities), ``"linear"`` (logits) or ``None`` (cannot tell: subclassed).

    Looks at the layer that produces a Functional/Sequential model's output; a subclassed model's ``call`` is
    opaque, so it returns ``None`` there.
    """
    if not getattr(core, "_is_graph_network", False) or len(core.outputs) != 1:
        return None
    history = getattr(core.outputs[0], "_keras_history", None)  # the layer that made the output tensor
    layer = history[0] if history else core.layers[-1]
    if isinstance(layer, keras.Model):
        return output_activation(layer)
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    name = getattr(act, "__name__", str(act))
    if name in _PROBABILITY_ACTIVATIONS:
        return name
    return "linear" if name == "linear" else None


def per_example_loss_fn(loss):
    """A callable ``(y, outputs) -> [B]`` for a Keras loss (object, function or name), without reduction."""
    loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        cfg = loss.get_config()
        cfg["reduction"] = keras.losses.Reduction.NONE
        return type(loss).from_config(cfg)
    return _PerExampleFunction(loss)


_ROWWISE_NAMES = ("BinaryCrossentropy", "BinaryFocalCrossentropy", "CategoricalCrossentropy",
                  "CategoricalFocalCrossentropy", "CategoricalHinge", "CosineSimilarity", "Hinge", "Huber",
                  "KLDivergence", "LogCosh", "MeanAbsoluteError", "MeanAbsolutePercentageError", "MeanSquaredError",
                  "MeanSquaredLogarithmicError", "Poisson", "SparseCategoricalCrossentropy", "SquaredHinge")
#: tf_keras' own losses, classes and functions: each row's value reads that row only (tests/privacy/test_attacks.py
#: measures it for every one). Matched by identity, not isinstance: a subclass may override ``call``.
ROWWISE_LOSSES = frozenset(getattr(keras.losses, n) for n in _ROWWISE_NAMES) | frozenset(
    keras.losses.get(getattr(keras.losses, n)().get_config()["name"]) for n in _ROWWISE_NAMES)


def is_rowwise(loss_fn) -> bool:
    """True for the per-example form (:func:`per_example_loss_fn`) of one of :data:`ROWWISE_LOSSES`."""
    if isinstance(loss_fn, _PerExampleFunction):
        return loss_fn.fn in ROWWISE_LOSSES
    return type(loss_fn) in ROWWISE_LOSSES


class _PerExampleFunction(keras.losses.Loss):
    """A Keras loss function as an unreduced ``Loss``; ``y`` ``[B]`` meets a ``[B, 1]`` output as ``[B, 1]``
    (what Keras' compile does for such functions, via a private wrapper we do not import)."""

    def __init__(self, fn):
        super().__init__(reduction=keras.losses.Reduction.NONE, name=getattr(fn, "__name__", "loss"))
        self.fn = fn

    def call(self, y_true, y_pred):
        if (y_true.shape.rank is not None and y_pred.shape.rank == y_true.shape.rank + 1
                and y_pred.shape[-1] == 1):
            y_true = tf.expand_dims(y_true, -1)
        return self.fn(y_true, y_pred)


def loss_from_logits(loss) -> Optional[bool]:
    """The loss's ``from_logits`` (``False`` for plain cross-entropy functions/names; ``None``: not a CE)."""
    loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        cfg = loss.get_config()
        return bool(cfg["from_logits"]) if "from_logits" in cfg else None
    name = getattr(loss, "__name__", "")
    return False if "crossentropy" in name else None


def check_loss_matches_output(core: keras.Model, loss) -> None:
    """Refuse a cross-entropy whose ``from_logits`` contradicts what the core outputs (no silent assumption)."""
    act, from_logits = output_activation(core), loss_from_logits(loss)
    if act is None or from_logits is None:
        return
    shown = getattr(loss, "name", None) or getattr(loss, "__name__", loss)
    if act in _PROBABILITY_ACTIVATIONS and from_logits:
        raise IncompatibleModelError(
            f"`loss`: the core {core.name!r} ends in a {act} (it outputs probabilities) but the loss expects logits "
            f"(from_logits=True). Received: loss={shown!r}. Remedy: pass from_logits=False, or remove the {act} "
            "so the core outputs logits (numerically safer)")
    if act == "linear" and not from_logits:
        raise IncompatibleModelError(
            f"`loss`: the core {core.name!r} ends in a linear layer (it outputs logits) but the loss expects "
            f"probabilities (from_logits=False). Received: loss={shown!r}. Remedy: pass from_logits=True")


class ResponsibleModel(keras.Model):
    """Trains ``core`` with composable loss terms, an input transform and a gradient transform.

    Args:
        core: any ``keras.Model`` (Sequential, functional or subclassed). Without a compiled loss it must output
            logits ``[batch, num_classes]`` (tfresp's default: sparse cross-entropy from logits).
        terms: loss terms (objects from :mod:`tfresp.terms` or callables
            ``fn(model, x, y, outputs, extras, training)``); a term with ``per_example = False`` is a batch term.
        input_transform: ``fn(model, x, y, extras) -> x'`` applied before the forward pass (e.g.
            :class:`tfresp.terms.AdversarialTraining`); its ``transform`` attribute is used when present.
        gradient: ``fn(model, x, y, extras) -> (loss, grads, outputs)`` replacing ``tape.gradient`` (DP-SGD, see
            :func:`tfresp.make_private`).
    """

    def __init__(self, core: keras.Model, terms: Sequence = (), input_transform=None, gradient=None, **kwargs):
        super().__init__(**kwargs)
        self.core = core
        self.per_example_losses = []
        self.batch_losses = []
        self.input_transform = getattr(input_transform, "transform", input_transform)
        self.gradient_fn = gradient
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.acc_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self._loss_fn = None  # per-example form of the compiled loss (None: CE from logits)
        self._user_metrics = False
        for term in terms:
            self.add_term(term)

    def add_term(self, term) -> None:
        """Attach a loss term (or an input transform object, which sets ``input_transform``)."""
        if getattr(term, "is_input_transform", False):
            if self.input_transform is not None:
                raise IncompatibleModelError(
                    f"`terms`: two input transforms ({term!r} and an earlier one); they cannot be combined. "
                    "Remedy: keep one")
            self.input_transform = term.transform
        elif getattr(term, "per_example", True):
            self.per_example_losses.append(term)
        else:
            self.batch_losses.append(term)

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        """Keras ``compile``; ``loss`` becomes the per-example base loss, ``metrics`` are updated every step.

        A cross-entropy whose ``from_logits`` contradicts the core's output layer is refused (see
        :func:`check_loss_matches_output`).
        """
        if loss is not None:
            check_loss_matches_output(self.core, loss)
            self._loss_fn = per_example_loss_fn(loss)
        self._user_metrics = bool(metrics) or bool(kwargs.get("weighted_metrics"))
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)

    def call(self, inputs, training=False):
        return self.core(inputs, training=training)

    @property
    def metrics(self):
        if self._user_metrics and getattr(self, "compiled_metrics", None) is not None:
            return [self.loss_tracker] + list(self.compiled_metrics.metrics)
        if self._loss_fn is not None:
            return [self.loss_tracker]
        return [self.loss_tracker, self.acc_tracker]

    # -- losses ---------------------------------------------------------------------------
    @staticmethod
    def unpack(data):
        """``(x, y, extras)`` from a Keras batch; a bare third element is Keras' ``sample_weight``."""
        if isinstance(data, (tuple, list)):
            if len(data) == 3:
                extras = data[2]
                if extras is None:
                    extras = {}
                elif not isinstance(extras, dict):
                    extras = {"sample_weight": extras}
                return data[0], data[1], extras
            if len(data) == 2:
                return data[0], data[1], {}
            if len(data) == 1:
                return data[0], None, {}
        return data, None, {}

    def base_per_example_loss(self, y, logits):
        if self._loss_fn is not None:
            loss = self._loss_fn(y, logits)
            if loss.shape.rank == 0:
                raise IncompatibleModelError(
                    f"`loss`: {getattr(self._loss_fn, 'name', 'the loss')!r} returns one value for the whole batch "
                    "(it reduces over the examples), but training needs one loss per example (sample weights, "
                    "per-example clipping under DP). Received: a scalar loss. Remedy: reduce only over the "
                    "non-batch axes (e.g. axis=-1), or use a Keras loss object")
            return loss if loss.shape.rank == 1 else tf.reduce_mean(tf.reshape(loss, [tf.shape(loss)[0], -1]), 1)
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
            w = tf.cast(w, loss.dtype)
            loss = loss * (w if w.shape.rank == 1 else tf.reshape(w, tf.shape(loss)))  # Keras may give [B, 1]
        for term in self.per_example_losses:
            loss = loss + tf.cast(term(self, x, y, logits, extras, training), loss.dtype)
        mask = extras.get("dp_mask") if isinstance(extras, dict) else None
        if mask is not None:  # a DP batch padded to a static shape: dummy rows have loss (and gradient) exactly 0
            loss = loss * tf.cast(tf.reshape(mask, tf.shape(loss)), loss.dtype)
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

    def _update_metrics(self, y, logits, extras):
        if self._user_metrics:
            mask = extras.get("dp_mask") if isinstance(extras, dict) else None
            if mask is not None and tf.is_tensor(logits):
                # the padding rows of a static-shape DP batch carry weight 0, but Keras' plain `metrics` ignore
                # sample weights: a Keras mask on the predictions is the one weight every compiled metric applies
                logits = tf.identity(logits)
                logits._keras_mask = tf.cast(mask, tf.bool)
            self.compiled_metrics.update_state(y, logits, extras.get("sample_weight"))
        elif self._loss_fn is None:
            mask = extras.get("dp_mask") if isinstance(extras, dict) else None
            self.acc_tracker.update_state(y, logits, sample_weight=mask)
        return {m.name: m.result() for m in self.metrics}

    def fit(self, x=None, y=None, *args, callbacks=None, class_weight=None, **kwargs):
        """Keras ``fit``. Under DP-SGD (a :class:`~tfresp.privacy.dpsgd.DPSGD` gradient transform) the
        mechanism's :class:`~tfresp.privacy.ledger.PrivacyLedger` is added to ``callbacks`` when missing, and a
        ``class_weight`` is folded into the extras' ``sample_weight`` (inside clipping): Keras' own
        class-weight mapping cannot handle an extras dict. The weights are the caller's: class weights
        computed from exact counts of private rows are a release not covered by ε."""
        dp = getattr(self.gradient_fn, "dp", None)
        if dp is not None:
            dp.check_model(self)
            callbacks = list(callbacks or [])
            if not any(cb is dp.ledger for cb in callbacks):
                callbacks.append(dp.ledger)
        if class_weight is not None and isinstance(x, tf.data.Dataset) and _yields_extras_dict(x):
            x = x.map(_class_weight_fn(class_weight))
            class_weight = None
        fresh = self.train_function is None
        try:
            return super().fit(x, y, *args, callbacks=callbacks, class_weight=class_weight, **kwargs)
        except Exception:
            if dp is not None and fresh:  # a step refused while tracing: the next fit traces (and builds) anew
                self.train_function = None
            raise

    def train_step(self, data):
        x, y, extras = self.unpack(data)
        dp = getattr(self.gradient_fn, "dp", None)
        if dp is not None:  # DP-SGD: the mechanism admits the batch, gates the step on its budget, counts it
            return dp.train_step(self, x, y, extras)
        loss, logits = self.gradient_step(x, y, extras)
        self.loss_tracker.update_state(loss)
        if logits is None:
            return {m.name: m.result() for m in self.metrics}
        return self._update_metrics(y, logits, extras)

    def test_step(self, data):
        x, y, extras = self.unpack(data)
        logits = self.core(x, training=False)
        per_ex = self.base_per_example_loss(y, logits)
        w = extras.get("sample_weight")
        loss = tf.reduce_mean(per_ex * tf.cast(w, per_ex.dtype)) if w is not None else tf.reduce_mean(per_ex)
        self.loss_tracker.update_state(loss)
        return self._update_metrics(y, logits, extras)

    def predict_step(self, data):
        x, _, _ = self.unpack(data)
        return self.core(x, training=False)


def _yields_extras_dict(ds) -> bool:
    spec = ds.element_spec
    return isinstance(spec, tuple) and len(spec) == 3 and isinstance(spec[2], dict)


def _class_weight_fn(class_weight):
    """Multiply ``extras["sample_weight"]`` by ``class_weight[y]`` (sparse or one-hot ``y``)."""
    size = max(int(k) for k in class_weight) + 1
    table = tf.constant([float(class_weight.get(i, 1.0)) for i in range(size)], tf.float32)

    def fn(x, y, extras):
        cls = tf.argmax(y, -1) if y.shape.rank == 2 and y.shape[-1] not in (None, 1) else \
            tf.cast(tf.round(tf.reshape(y, [-1])), tf.int64)
        extras = dict(extras)
        cw = tf.gather(table, cls)
        sw = extras.get("sample_weight")
        extras["sample_weight"] = cw if sw is None else tf.cast(tf.reshape(sw, [-1]), tf.float32) * cw
        return x, y, extras

    return fn
