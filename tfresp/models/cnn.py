"""Small ResNet-style image classifier (functional Keras) plus pretrain -> fine-tune from a tfresp run.

``model.kind: cnn`` builds, for ``model.hidden = [w1, w2, ...]`` stage widths::

    stem conv3x3(w1) -> [stage i: conv3x3(wi, stride 2 for i > 0) -> residual block(wi)] -> global avg pool
    -> dense "logits"

Residual blocks follow He et al. (2016), "Deep Residual Learning for Image Recognition", without
batch normalization: BatchNorm mixes examples in a batch, which breaks per-example gradients
(DP-SGD) and per-example adversarial examples; the blocks use a zero-initialised last conv instead
(Goyal et al. 2017 / "Fixup"-style), so they start as the identity.

Fine-tuning: ``model.checkpoint: <tfresp run dir>`` copies the matching weights (by layer/variable
name) from that run's ``saved_model``; the head (``logits``) is copied only when the label sets are
identical, otherwise it is freshly initialised. ``model.freeze: all-but-head`` trains only the head;
``model.freeze: N`` freezes the first N convolutional layers.

Example:
    >>> core = build_cnn((8, 8, 1), 10, widths=[16, 32])
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfresp.errors import CheckpointError, ConfigError
from tfresp.models.registry import register_model

HEAD = "logits"
DEFAULT_WIDTHS = (16, 32)


def _residual_block(x, width: int, name: str, activation: str):
    shortcut = x
    h = keras.layers.Conv2D(width, 3, padding="same", activation=activation, name=f"{name}_conv_a")(x)
    h = keras.layers.Conv2D(width, 3, padding="same", kernel_initializer="zeros", name=f"{name}_conv_b")(h)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, h])
    return keras.layers.Activation(activation, name=f"{name}_out")(x)


def build_cnn(input_shape: Sequence[int], num_classes: int, widths: Iterable[int] = (16, 32),
              dropout: float = 0.0, activation: str = "relu", name: str = "cnn") -> keras.Model:
    """A functional ResNet-style CNN mapping ``[B, H, W, C]`` images to ``num_classes`` logits.

    Args:
        input_shape: ``(H, W, C)``.
        num_classes: number of output logits.
        widths: filters per stage; stage ``i > 0`` halves the spatial size (stride 2).
        dropout: dropout rate before the head.
        activation: hidden activation.
        name: model name.

    Returns:
        A ``keras.Model`` whose last layer is the dense head named ``logits``.
    """
    widths = list(widths)
    if not widths:
        raise ConfigError([("model.hidden", widths, "a CNN needs at least one stage width")])
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = keras.layers.Conv2D(widths[0], 3, padding="same", activation=activation, name="stem")(inputs)
    for i, w in enumerate(widths):
        if i > 0:
            x = keras.layers.Conv2D(w, 3, strides=2, padding="same", activation=activation,
                                    name=f"stage{i}_down")(x)
        x = _residual_block(x, w, f"stage{i}_res", activation)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    logits = keras.layers.Dense(num_classes, name=HEAD)(x)
    return keras.Model(inputs, logits, name=name)


# -- pretrained weights from a tfresp run --------------------------------------------------------
def _run_classes(run_dir: Path) -> Optional[list]:
    report = run_dir / "report.json"
    if report.exists():
        try:
            return list(json.loads(report.read_text())["data"]["classes"])
        except (ValueError, KeyError, TypeError):
            return None
    return None


def saved_model_variables(run_dir) -> Dict[str, tf.Variable]:
    """The core model's variables of a tfresp run's ``saved_model``, keyed by variable name.

    Raises:
        CheckpointError: the run has no readable SavedModel with a ``core`` model.
    """
    run_dir = Path(run_dir).expanduser()
    sm = run_dir / "saved_model"
    if not run_dir.is_dir():
        raise CheckpointError(f"Invalid value for `model.checkpoint`: {str(run_dir)!r} is not a directory "
                              "(expected a tfresp run directory)")
    if not (sm / "saved_model.pb").exists():
        raise CheckpointError(f"Invalid value for `model.checkpoint`: {str(run_dir)!r} has no saved_model/ "
                              "(run the pretraining with export.saved_model: true)")
    try:
        loaded = tf.saved_model.load(str(sm))
        core = loaded.core
        variables = list(core.variables)
    except Exception as exc:  # corrupted protobuf / missing variables / not a tfresp export
        raise CheckpointError(f"Invalid value for `model.checkpoint`: cannot read {str(sm)!r} "
                              f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})"
                              ) from None
    return {v.name: v for v in variables}


def load_from_run(core: keras.Model, run_dir, classes: Optional[Sequence[str]] = None) -> dict:
    """Copy weights by name from a tfresp run into ``core``; re-initialise the head if the labels differ.

    Args:
        core: the freshly built model.
        run_dir: a finished tfresp run directory.
        classes: this run's class names; when they differ from the source run's, the head is not copied.

    Returns:
        ``{"loaded": [...], "reinitialised": [...], "source_classes": [...]}`` for the report.

    Raises:
        CheckpointError: nothing matched, or a matching variable has a different shape.
    """
    run_dir = Path(run_dir).expanduser()
    source = saved_model_variables(run_dir)
    src_classes = _run_classes(run_dir)
    keep_head = classes is not None and src_classes is not None and list(classes) == list(src_classes)
    loaded, skipped = [], []
    for var in core.variables:
        is_head = var.name.startswith(HEAD + "/")
        if is_head and not keep_head:
            skipped.append(var.name)
            continue
        src = source.get(var.name)
        if src is None:
            skipped.append(var.name)
            continue
        if tuple(src.shape) != tuple(var.shape):
            raise CheckpointError(f"Invalid value for `model.checkpoint`: variable {var.name!r} has shape "
                                  f"{tuple(src.shape)} in {str(run_dir)!r} but {tuple(var.shape)} here; "
                                  "use the same model.hidden and image size as the pretraining run")
        var.assign(src)
        loaded.append(var.name)
    if not any(not n.startswith(HEAD + "/") for n in loaded):
        raise CheckpointError(f"Invalid value for `model.checkpoint`: no layer of {str(run_dir)!r} matches this "
                              f"model (source variables: {sorted(source)[:8]}); was it trained with model.kind: cnn?")
    return {"loaded": loaded, "reinitialised": skipped, "source_classes": src_classes,
            "head_copied": keep_head}


def apply_freeze(core: keras.Model, freeze) -> list:
    """Freeze layers: ``"all-but-head"`` or an int N (the first N conv layers). Returns frozen layer names."""
    if freeze is None:
        return []
    weighted = [l for l in core.layers if l.weights]
    if freeze == "all-but-head":
        frozen = [l for l in weighted if l.name != HEAD]
    elif isinstance(freeze, int) and not isinstance(freeze, bool):
        convs = [l for l in weighted if isinstance(l, keras.layers.Conv2D)]
        if freeze > len(convs):
            raise ConfigError([("model.freeze", freeze, f"at most {len(convs)} (the CNN's conv layers)")])
        frozen = convs[:freeze]
    else:
        raise ConfigError([("model.freeze", freeze, "for a CNN: 'all-but-head' or a number of conv layers")])
    for layer in frozen:
        layer.trainable = False
    return [l.name for l in frozen]


@register_model("cnn")
def _cnn(config, data):
    if data.kind != "image":
        raise ConfigError([("model.kind", "cnn", f"a CNN needs image data (data.source: digits), "
                            f"but the data is {data.kind}")])
    m = config.model
    # model.hidden's default ([64, 32]) is sized for MLPs; a CNN left unconfigured gets its own stage widths,
    # recorded in the resolved config (config.yaml) so the run can be rebuilt exactly.
    if "hidden" not in m.model_fields_set:
        m.hidden = list(DEFAULT_WIDTHS)
    widths = m.hidden
    core = build_cnn(tuple(int(d) for d in data.input_shape), data.num_classes, widths, m.dropout, m.activation)
    if m.checkpoint:
        load_from_run(core, m.checkpoint, data.classes)
    elif m.freeze is not None:
        raise ConfigError([("model.freeze", m.freeze, "freezing needs pretrained weights: set model.checkpoint "
                            "to a tfresp run directory")])
    apply_freeze(core, m.freeze)
    return core


def count_params(variables) -> int:
    return int(sum(int(np.prod(v.shape)) for v in variables))
