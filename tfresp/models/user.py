"""Bring your own model: a user's ``keras.Model`` (or a builder ``fn(input_spec) -> keras.Model``) as a run's core.

tfresp trains, audits and exports a core that outputs logits ``[batch, num_classes]``. A user's model is checked
on a few synthetic rows shaped like the data (zeros; never training rows, which under DP only the mechanism sees)
before any training: its output must have ``num_classes`` columns (or one column for a
binary label); a softmax/sigmoid output is converted to log-probabilities by a weightless layer appended to it
(``softmax(log p) = p``, so predictions, metrics and the export are the user's probabilities); a one-column linear
output is taken as the positive-class logit. Where tfresp cannot tell logits from probabilities (a subclassed model
with one output column) it refuses and asks for ``model.outputs``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, List, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfresp.errors import ConfigError, IncompatibleModelError
from tfresp.models.base import loss_from_logits, output_activation


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What a model builder ``fn(input_spec) -> keras.Model`` is told about the encoded data.

    Attributes:
        shape: one example's encoded input shape (tabular: ``(encoded_dim,)``; images: ``(h, w)``).
        num_classes: number of label classes (the core should output this many logits).
        classes: the class names, in logit order.
        kind: ``tabular`` | ``image`` | ``text``.
        features: the raw feature columns behind the encoding.
        dtype: the input dtype.
    """

    shape: Tuple[int, ...]
    num_classes: int
    classes: Tuple[str, ...]
    kind: str
    features: Tuple[str, ...]
    dtype: str = "float32"


def input_spec(data) -> InputSpec:
    x = data.train.x
    shape = tuple(int(d) for d in x.shape[1:]) if hasattr(x, "shape") else ()
    dtype = str(getattr(x, "dtype", "float32"))
    return InputSpec(shape=shape, num_classes=int(data.num_classes), classes=tuple(data.classes), kind=data.kind,
                     features=tuple(data.feature_columns), dtype=dtype)


class ProbabilitiesToLogits(keras.layers.Layer):
    """Weightless layer mapping probabilities (or a one-column logit) to ``[B, K]`` logits.

    Args:
        source: ``softmax`` (``[B, K]`` probabilities -> ``log p``), ``sigmoid`` (``[B, 1]`` -> ``[log(1-p), log p]``)
            or ``binary_logit`` (``[B, 1]`` logit ``z`` -> ``[0, z]``).
    """

    def __init__(self, source: str, **kwargs):
        super().__init__(**kwargs)
        self.source = source

    def call(self, outputs):
        outputs = tf.cast(outputs, tf.float32)
        if self.source == "binary_logit":
            return tf.concat([tf.zeros_like(outputs), outputs], axis=-1)
        p = tf.clip_by_value(outputs, 1e-7, 1.0)
        if self.source == "sigmoid":
            return tf.concat([tf.math.log(tf.clip_by_value(1.0 - outputs, 1e-7, 1.0)), tf.math.log(p)], axis=-1)
        return tf.math.log(p)

    def get_config(self):
        return {**super().get_config(), "source": self.source}


class _LogitsOf(keras.Model):
    """A subclassed core followed by :class:`ProbabilitiesToLogits`."""

    def __init__(self, core, source, **kwargs):
        super().__init__(name=core.name + "_logits", **kwargs)
        self.inner = core
        self.to_logits = ProbabilitiesToLogits(source)

    def call(self, inputs, training=False):
        return self.to_logits(self.inner(inputs, training=training))


def _with_logits(core, source: str):
    if getattr(core, "_is_graph_network", False) and len(core.outputs) == 1:
        out = ProbabilitiesToLogits(source, name="tfresp_to_logits")(core.outputs[0])
        return keras.Model(core.inputs, out, name=core.name)
    return _LogitsOf(core, source)


def _sample(x, n: int = 8):
    """``n`` synthetic rows shaped like ``x``'s (zeros; empty strings). The user's model is called on them before
    DP admission, so its code (a print, a Python callback) never sees a training row outside the mechanism."""
    def blank(a):
        a = np.asarray(a[:n])
        return np.full_like(a, "") if a.dtype.kind in "OSU" else np.zeros_like(a)

    return tf.nest.map_structure(blank, x)


def output_kind(core, out: np.ndarray, declared: str) -> str:
    """``logits`` | ``softmax`` | ``sigmoid`` | ``binary_logit`` for a core whose sample output is ``out``."""
    k = out.shape[-1]
    act = output_activation(core)
    if declared != "auto":
        measured = act
        if act is None and k > 1:  # subclassed: probe the sample output
            measured = "softmax" if np.all(out >= 0) and np.allclose(out.sum(-1), 1.0, atol=1e-4) else None
        if (declared == "logits" and measured in ("softmax", "sigmoid")) or (declared == "probabilities"
                                                                            and measured == "linear"):
            what = (f"ends in a {measured} (it outputs probabilities)" if measured != "linear" else
                    "ends in a linear layer (it outputs logits)")
            raise IncompatibleModelError(
                f"`model.outputs`: the model {core.name!r} {what}, which contradicts the declaration. Received: "
                f"outputs={declared!r}. Remedy: set model.outputs to "
                f"{'probabilities' if measured != 'linear' else 'logits'} or 'auto', or change the last layer")
        if declared == "logits":
            return "binary_logit" if k == 1 else "logits"
        return "sigmoid" if k == 1 else "softmax"
    if act in ("softmax", "sigmoid"):
        return "sigmoid" if k == 1 else "softmax"
    if act == "linear":
        return "binary_logit" if k == 1 else "logits"
    if k > 1:  # subclassed: probabilities are non-negative rows summing to one; random-init logits are not
        probs = bool(np.all(out >= 0) and np.allclose(out.sum(-1), 1.0, atol=1e-4))
        return "softmax" if probs else "logits"
    raise IncompatibleModelError(
        f"`model.outputs`: the model {core.name!r} ({type(core).__name__}) has one output column and its call is "
        "opaque, so tfresp cannot tell a logit from a probability. Received: outputs='auto'. Remedy: set "
        "model.outputs to 'logits' or 'probabilities'")


def resolve(model: Any, config, data) -> Tuple[keras.Model, dict]:
    """``(core, report_info)`` for a user's model or builder, checked on a few synthetic rows shaped like the data.

    Raises:
        ConfigError: ``model`` is neither a keras.Model nor a builder returning one.
        IncompatibleModelError: the output shape does not match the classes, or outputs are ambiguous.
    """
    user = model
    if not isinstance(user, keras.Model):
        if not callable(user):
            raise ConfigError([("model", type(model).__name__, "expected a keras.Model or a builder "
                                "fn(input_spec) -> keras.Model")])
        user = user(input_spec(data))
        if not isinstance(user, keras.Model):
            raise ConfigError([("model", type(user).__name__, "the builder must return a keras.Model "
                                "(tf_keras, the Keras 2 that tfresp uses)")])
    _check_training_hooks(user)
    _check_single_output(user)
    sample = _sample(data.train.x)
    try:
        out = user(sample, training=False)
    except Exception as exc:  # any shape/dtype mismatch of the user's model: name it, do not train
        raise IncompatibleModelError(
            f"`model`: {user.name!r} ({type(user).__name__}) cannot be called on the encoded inputs "
            f"(one example has shape {input_spec(data).shape}): {type(exc).__name__}: {str(exc).splitlines()[0][:200]}."
            " Remedy: build the model for this input (a builder fn(input_spec) receives the shape)") from None
    if isinstance(out, (list, tuple, dict)):
        _check_single_output(user, n=len(out))
    out = np.asarray(out)
    k = data.num_classes
    if out.ndim != 2 or not (out.shape[-1] == k or (k == 2 and out.shape[-1] == 1)):
        raise IncompatibleModelError(
            f"`model`: {user.name!r} outputs shape {tuple(out.shape[1:])} per example, but the label has {k} "
            f"classes {list(data.classes)[:10]}. Remedy: end the model with Dense({k})"
            + (" (or Dense(1) for the positive class)" if k == 2 else ""))
    kind = output_kind(user, out, config.model.outputs)
    core = user if kind == "logits" else _with_logits(user, kind)
    info = describe(user)
    compiled = compiled_training(user, config, kind)
    if compiled:
        info["compile"] = compiled
    info["outputs"] = {"logits": "logits", "softmax": "softmax probabilities (trained as log-probabilities)",
                       "sigmoid": "sigmoid probability of the positive class (trained as log-probabilities)",
                       "binary_logit": "one logit of the positive class (trained as [0, z])"}[kind]
    return core, info


def describe(model: keras.Model) -> dict:
    """The user's model as the report names it: class, API, layers, parameters and the Keras summary."""
    lines: List[str] = []
    try:
        model.summary(print_fn=lambda s, **_: lines.append(s), line_length=100)
    except ValueError:  # an unbuilt model has no summary
        lines = []
    api = ("sequential" if isinstance(model, keras.Sequential) else
           "functional" if getattr(model, "_is_graph_network", False) else "subclassed")
    cls = type(model)
    return {"kind": "keras", "name": model.name, "class": f"{cls.__module__}.{cls.__qualname__}", "api": api,
            "layers": len(model.layers),
            "architecture": [{"name": l.name, "class": type(l).__name__,
                              "params": int(l.count_params()) if l.built else None} for l in model.layers],
            "user_parameters": int(sum(int(np.prod(v.shape)) for v in model.weights)),
            "summary": "\n".join(lines[:400])}



#: ``train`` keys that choose the optimizer; set in the config *and* in the model's ``compile`` they conflict
_OPTIMIZER_KEYS = ("optimizer", "learning_rate", "warmup", "weight_decay", "clipnorm")
_CROSS_ENTROPIES = ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy")


def _check_training_hooks(user: keras.Model) -> None:
    """A model with its own ``train_step``/``compute_loss`` is refused: tfresp trains the core inside its own
    step (loss terms, input and DP gradient transforms), so an override would silently never run."""
    overridden = [name for name in ("train_step", "compute_loss")
                  if getattr(type(user), name, None) is not getattr(keras.Model, name)]
    if overridden:
        raise IncompatibleModelError(
            f"`model`: {user.name!r} ({type(user).__name__}) overrides {overridden}; tfresp trains the model in "
            f"its own train_step (loss terms, robustness and DP transforms), so the override would never run. "
            "Received: a custom training step. Remedy: move extra losses into the model (self.add_loss) or a "
            "tfresp term (tfresp.terms), or train it with your own model.fit and audit the result with tfresp")


def _check_single_output(user: keras.Model, n: int = None) -> None:
    outputs = n if n is not None else (len(user.outputs) if getattr(user, "_is_graph_network", False) else 1)
    if outputs != 1:
        raise IncompatibleModelError(
            f"`model`: {user.name!r} has {outputs} outputs; tfresp trains, audits and serves a classifier with one "
            "output [batch, classes]. Received: a multi-output model. Remedy: pass a model with one output, e.g. "
            "keras.Model(model.inputs, model.outputs[0])")


def _loss_name(loss) -> str:
    if isinstance(loss, str):
        return loss
    fn = getattr(loss, "fn", None)  # a keras.losses.Loss wrapping a function
    return getattr(fn, "__name__", None) or getattr(loss, "__name__", None) or type(loss).__name__


def compiled_training(user: keras.Model, config, kind: str) -> dict:
    """What the user's own ``compile`` chose, honoured or refused (Keras users expect their compile to count).

    - optimizer: used as compiled (a fresh copy from its config), unless the config sets a ``train`` optimizer
      key too, which is refused as a conflict naming both;
    - loss: a cross-entropy is what tfresp trains (on the model's logits; its probabilities are converted), so it
      is honoured; any other loss is refused (tfresp's audits and DP accounting assume cross-entropy).

    Returns ``{"optimizer": serialized, "loss": name}`` for the keys the model's compile set.
    """
    out = {}
    optimizer = getattr(user, "optimizer", None)
    if optimizer is not None and getattr(user, "_is_compiled", False):
        serialized = keras.optimizers.serialize(optimizer)
        explicit = sorted(k for k in _OPTIMIZER_KEYS if k in config.train.model_fields_set)
        if explicit:
            shown = ", ".join(f"train.{k}={getattr(config.train, k)!r}" for k in explicit)
            raise ConfigError([(f"train.{explicit[0]}", getattr(config.train, explicit[0]),
                                f"conflicts with the model's own compile ({type(optimizer).__name__}, learning rate "
                                f"{_lr(optimizer)}); the config also sets {shown}. Remedy: drop those train keys to "
                                "keep the model's optimizer, or recompile the model without an optimizer")])
        out["optimizer"] = serialized
    loss = getattr(user, "loss", None)
    if loss is not None and getattr(user, "_is_compiled", False):
        name = _loss_name(loss)
        if name not in _CROSS_ENTROPIES and not any(name.lower().replace("_", "") == c.replace("_", "")
                                                    for c in _CROSS_ENTROPIES):
            raise IncompatibleModelError(
                f"`model`: {user.name!r} was compiled with loss {name!r}; tfresp trains classifiers with "
                "cross-entropy (its metrics, fairness terms and DP accounting assume it). Received: "
                f"loss={name!r}. Remedy: compile with a cross-entropy (or no loss), or train the model yourself")
        from_logits = loss_from_logits(loss)
        if from_logits is not None and kind in ("softmax", "sigmoid") and from_logits:
            raise IncompatibleModelError(
                f"`model`: {user.name!r} outputs probabilities ({kind}) but was compiled with a loss on logits "
                f"(from_logits=True). Received: loss={name!r}. Remedy: compile with from_logits=False")
        if from_logits is not None and kind in ("logits", "binary_logit") and not from_logits:
            raise IncompatibleModelError(
                f"`model`: {user.name!r} outputs logits but was compiled with a loss on probabilities "
                f"(from_logits=False). Received: loss={name!r}. Remedy: compile with from_logits=True")
        out["loss"] = f"{name} (honoured: tfresp trains the same cross-entropy on the model's outputs)"
    return out


def _lr(optimizer) -> str:
    try:
        return f"{float(keras.backend.get_value(optimizer.learning_rate)):g}"
    except Exception:  # a schedule
        return "a schedule"


def compiled_optimizer(model_info: dict):
    """A fresh optimizer from the user's ``compile`` (recorded by :func:`compiled_training`), or ``None``."""
    serialized = (model_info or {}).get("compile", {}).get("optimizer")
    return keras.optimizers.deserialize(serialized) if serialized else None
