"""A functional Keras BERT (Devlin et al., 2019) that loads transformers TF checkpoints.

Built only from layers that tensorflow-privacy's fast-clipping registry and tfmot understand
(``Embedding``, ``Dense``, ``LayerNormalization``, ``Dropout``) plus small weight-free layers for
the attention arithmetic, so DP ghost clipping (Li et al., 2022) and pruning apply to the whole
encoder. Weights use the transformers naming (``encoder/layer_._0/attention/self/query/kernel``),
so a transformers ``tf_model.h5`` and a tfresp checkpoint load through the same code.

Example:
    >>> cfg = BertConfig(vocab_size=8000, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256)
    >>> core = build_classifier(cfg, num_classes=3, max_length=64)
    >>> core({"input_ids": ids, "attention_mask": mask}).shape   # [batch, 3] logits
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfresp.data.text import CHECKPOINT_CONFIG as CONFIG_FILE
from tfresp.data.text import CHECKPOINT_DIR, CHECKPOINT_LAYOUTS, checkpoint_dir, checkpoint_vocab  # noqa: F401
from tfresp.errors import ConfigError, IncompatibleModelError
from tfresp.models import hf_loading
from tfresp.models import peft as peft_mod
from tfresp.models.hf_loading import BertConfig
from tfresp.models.layers import gelu
from tfresp.models.registry import register_model

WEIGHTS_FILE = "weights.npz"


# -- weight-free helper layers (no trainable variables: transparent to DP clipping and pruning) ----------
class PositionIds(keras.layers.Layer):
    """``[batch, length]`` position ids ``0..length-1`` for an ``input_ids`` tensor.

    With ``padding_idx`` (RoBERTa), transformers' ``create_position_ids_from_input_ids``: non-padding tokens
    count up from ``padding_idx + 1``, padding tokens get ``padding_idx``.
    """

    def __init__(self, padding_idx: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.padding_idx = padding_idx

    def call(self, input_ids):
        if self.padding_idx is not None:
            real = tf.cast(tf.not_equal(input_ids, self.padding_idx), input_ids.dtype)
            return tf.cumsum(real, axis=1) * real + self.padding_idx
        length = tf.shape(input_ids)[1]
        return tf.broadcast_to(tf.range(length, dtype=input_ids.dtype)[tf.newaxis, :], tf.shape(input_ids))

    def get_config(self):
        return {**super().get_config(), "padding_idx": self.padding_idx}


class ZerosLike(keras.layers.Layer):
    """Token-type ids (all segment 0: single-sentence tasks)."""

    def call(self, input_ids):
        return tf.zeros_like(input_ids)


class ClsToken(keras.layers.Layer):
    """The hidden state of the first (``[CLS]``) token."""

    def call(self, hidden):
        return hidden[:, 0, :]


class MeanPool(keras.layers.Layer):
    """Mean of the hidden states over the real (``attention_mask == 1``) tokens."""

    def call(self, hidden, mask):
        m = tf.cast(mask, hidden.dtype)[:, :, tf.newaxis]
        return tf.reduce_sum(hidden * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)


POOLINGS = ("cls", "mean")


class DotProductAttention(keras.layers.Layer):
    """Multi-head scaled dot-product attention over projected q, k, v (Vaswani et al., 2017).

    Args:
        num_heads: number of heads; the hidden size must be divisible by it.
        dropout: dropout on the attention probabilities.
    """

    def __init__(self, num_heads: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.dropout = int(num_heads), float(dropout)
        self._drop = keras.layers.Dropout(self.dropout) if self.dropout > 0 else None

    def call(self, q, k, v, mask, training=None):
        b, n = tf.shape(q)[0], tf.shape(q)[1]
        hidden = q.shape[-1]
        d = hidden // self.num_heads

        def heads(t):
            return tf.transpose(tf.reshape(t, [b, -1, self.num_heads, d]), [0, 2, 1, 3])

        scores = tf.matmul(heads(q), heads(k), transpose_b=True) / math.sqrt(d)
        add = (1.0 - tf.cast(mask, scores.dtype))[:, tf.newaxis, tf.newaxis, :] * tf.cast(-1e9, scores.dtype)
        probs = tf.nn.softmax(scores + add, axis=-1)
        if self._drop is not None:
            probs = self._drop(probs, training=training)
        ctx = tf.matmul(probs, heads(v))
        return tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [b, n, hidden])

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "dropout": self.dropout}


def _residual_block(h, out, prefix: str, cfg, peft):
    """Dropout, optional bottleneck adapter, then ``LayerNorm(h + out)`` (names ``<prefix>_dropout/_adapter/_ln``)."""
    out = _dropout(out, cfg.dropout, prefix + "_dropout")
    if peft and peft.get("adapters"):
        from tfresp.models.peft import adapter

        out = adapter(out, prefix + "_adapter", peft["adapters"], cfg.hidden_size)
    return keras.layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name=prefix + "_ln")(
        keras.layers.Add(name=prefix + "_residual")([h, out]))


def _dropout(x, rate: float, name: str):
    """Dropout only when ``rate > 0``: no stochastic layer in the graph otherwise (DP ghost clipping needs that)."""
    return keras.layers.Dropout(rate, name=name)(x) if rate > 0 else x


# -- building -------------------------------------------------------------------------------------------
def _init(cfg: BertConfig):
    return keras.initializers.TruncatedNormal(stddev=cfg.initializer_range)


def _projection(x, width: int, name: str, cfg: BertConfig, peft: Optional[dict], activation=None):
    """Dense projection, plus a LoRA branch (Hu et al., 2022) when ``name`` is a LoRA target."""
    from tfresp.models import peft as peft_mod

    out = keras.layers.Dense(width, activation=None, kernel_initializer=_init(cfg), name=name)(x)
    if peft and peft.get("lora") and peft_mod.is_lora_target(name, peft["lora"]):
        out = peft_mod.lora_branch(x, out, name, peft["lora"])
    if activation is not None:
        out = keras.layers.Activation(activation, name=f"{name}_act")(out)
    return out


def encoder(cfg: BertConfig, max_length: int, peft: Optional[dict] = None):
    """Inputs and the final hidden states ``[batch, length, hidden]`` of a BERT encoder."""
    if cfg.hidden_size % cfg.num_heads:
        raise ConfigError([("model.bert.heads", cfg.num_heads, f"must divide hidden={cfg.hidden_size}")])
    ids = keras.Input(shape=(None,), dtype=tf.int32, name="input_ids")
    mask = keras.Input(shape=(None,), dtype=tf.int32, name="attention_mask")
    width = cfg.embedding_size or cfg.hidden_size
    word = keras.layers.Embedding(cfg.vocab_size, width, embeddings_initializer=_init(cfg),
                                  name="embeddings_word")(ids)
    positions = PositionIds(cfg.position_padding_idx, name="position_ids")(ids)
    parts = [word, keras.layers.Embedding(cfg.max_position, width, embeddings_initializer=_init(cfg),
                                          name="embeddings_position")(positions)]
    if cfg.type_vocab_size > 0:  # DistilBERT has no token-type table
        parts.append(keras.layers.Embedding(cfg.type_vocab_size, width, embeddings_initializer=_init(cfg),
                                            name="embeddings_token_type")(ZerosLike(name="token_type_ids")(ids)))
    h = keras.layers.Add(name="embeddings_sum")(parts)
    h = keras.layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name="embeddings_ln")(h)
    h = _dropout(h, cfg.dropout, "embeddings_dropout")
    if cfg.embedding_size and cfg.embedding_size != cfg.hidden_size:  # ELECTRA's embeddings_project
        h = keras.layers.Dense(cfg.hidden_size, kernel_initializer=_init(cfg), name="embeddings_project")(h)
    for i in range(cfg.num_layers):
        p = f"layer_{i}_"
        q = _projection(h, cfg.hidden_size, p + "query", cfg, peft)
        k = _projection(h, cfg.hidden_size, p + "key", cfg, peft)
        v = _projection(h, cfg.hidden_size, p + "value", cfg, peft)
        a = DotProductAttention(cfg.num_heads, cfg.attention_dropout, name=p + "attention")(q, k, v, mask)
        a = _projection(a, cfg.hidden_size, p + "attention_output", cfg, peft)
        h = _residual_block(h, a, p + "attention", cfg, peft)
        f = _projection(h, cfg.intermediate_size, p + "intermediate", cfg, peft, activation=gelu)
        f = _projection(f, cfg.hidden_size, p + "output", cfg, peft)
        h = _residual_block(h, f, p + "output", cfg, peft)
    return {"input_ids": ids, "attention_mask": mask}, h


def build_classifier(cfg: BertConfig, num_classes: int, max_length: int = 128, peft: Optional[dict] = None,
                     name: str = "bert_classifier") -> keras.Model:
    """BERT encoder + pooling (``cfg.pooling``: tanh pooler on ``[CLS]`` or masked mean) + dropout + linear logits."""
    inputs, h = encoder(cfg, max_length, peft)
    pooled = pool(cfg, inputs, h)
    pooled = _dropout(pooled, cfg.dropout, "classifier_dropout")
    logits = keras.layers.Dense(num_classes, kernel_initializer=_init(cfg), name="classifier")(pooled)
    return keras.Model(inputs, logits, name=name)


def pool(cfg: BertConfig, inputs: dict, h):
    """The ``[batch, hidden]`` sentence vector the classifier reads (layer ``pooled``)."""
    if cfg.pooling == "mean":
        return MeanPool(name="pooled")(h, inputs["attention_mask"])
    if cfg.pooling != "cls":
        raise ConfigError([("model.pooling", cfg.pooling, f"one of {list(POOLINGS)}")])
    return keras.layers.Dense(cfg.hidden_size, activation="tanh", kernel_initializer=_init(cfg),
                              name="pooler")(ClsToken(name="cls_token")(h))


def merge_lora(core: keras.Model, cfg: BertConfig, num_classes: int, max_length: int, mc) -> keras.Model:
    """A classifier without LoRA branches whose target kernels are ``W + (alpha/r) A B``
    (:func:`tfresp.models.peft.merge_lora_weights`); adapters, if any, are kept."""
    spec = peft_mod.parse(mc) or {}
    merged = build_classifier(cfg, num_classes, max_length, {"adapters": spec["adapters"]} if "adapters" in spec
                              else None, name=core.name)
    return peft_mod.merge_lora_weights(core, merged, mc)


def build_mlm(cfg: BertConfig, max_length: int = 128, name: str = "bert_mlm") -> keras.Model:
    """BERT encoder + masked-LM head (dense-gelu-LayerNorm-vocab logits ``[batch, length, vocab]``)."""
    inputs, h = encoder(cfg, max_length)
    t = keras.layers.Dense(cfg.hidden_size, activation=gelu, kernel_initializer=_init(cfg), name="mlm_transform")(h)
    t = keras.layers.LayerNormalization(epsilon=cfg.layer_norm_eps, name="mlm_ln")(t)
    logits = keras.layers.Dense(cfg.vocab_size, kernel_initializer=_init(cfg), name="mlm_logits")(t)
    return keras.Model(inputs, logits, name=name)


def build_hidden_model(cfg: BertConfig, max_length: int = 128) -> keras.Model:
    """Encoder only: ``last_hidden_state`` (for equality checks against transformers)."""
    inputs, h = encoder(cfg, max_length)
    return keras.Model(inputs, h, name="bert_encoder")


# -- transformers-style weight names --------------------------------------------------------------------
_LAYER_MAP = {"query": "attention/self/query", "key": "attention/self/key", "value": "attention/self/value",
              "attention_output": "attention/output/dense", "attention_ln": "attention/output/LayerNorm",
              "intermediate": "intermediate/dense", "output": "output/dense", "output_ln": "output/LayerNorm"}
_TOP_MAP = {"embeddings_word": "embeddings/word_embeddings", "embeddings_position": "embeddings/position_embeddings",
            "embeddings_token_type": "embeddings/token_type_embeddings", "embeddings_ln": "embeddings/LayerNorm",
            "embeddings_project": "embeddings_project", "pooler": "pooler/dense"}
_VAR_MAP = {"kernel": "kernel", "bias": "bias", "gamma": "gamma", "beta": "beta", "embeddings": "embeddings"}


def hf_name(layer_name: str, var_name: str) -> Optional[str]:
    """transformers name of a functional-BERT variable (None for non-BERT layers such as LoRA or heads)."""
    base = None
    if layer_name in _TOP_MAP:
        base = _TOP_MAP[layer_name]
    elif layer_name.startswith("layer_"):
        i, _, rest = layer_name[len("layer_"):].partition("_")
        if rest in _LAYER_MAP:
            base = f"encoder/layer_._{i}/{_LAYER_MAP[rest]}"
    if base is None:
        return None
    if base == "embeddings/word_embeddings":
        return base + "/weight"
    return f"{base}/{_VAR_MAP.get(var_name, var_name)}"


def _short(var) -> str:
    return var.name.split("/")[-1].split(":")[0]


def named_weights(model: keras.Model, include_all: bool = False) -> Dict[str, np.ndarray]:
    """``{transformers name: array}`` for the encoder (and, with ``include_all``, ``<layer>/<var>`` for the rest)."""
    out = {}
    for layer in model.layers:
        for var in layer.weights:
            name = hf_name(layer.name, _short(var))
            if name is None and include_all:
                name = f"tfresp/{layer.name}/{_short(var)}"
            if name is not None:
                out[name] = var.numpy()
    return out


def assign_named_weights(model: keras.Model, weights: Dict[str, np.ndarray], strict: bool = True) -> List[str]:
    """Copy ``weights`` (transformers names) into ``model``; returns the names that were loaded.

    Raises:
        IncompatibleModelError: a BERT variable is missing in ``weights`` (``strict``) or its shape differs.
    """
    loaded = []
    for layer in model.layers:
        for var in layer.weights:
            name = hf_name(layer.name, _short(var))
            if name is None:
                name = f"tfresp/{layer.name}/{_short(var)}"
                if name not in weights or tuple(weights[name].shape) != tuple(var.shape):
                    continue  # heads/PEFT weights load only when they fit (same task and classes)
            if name not in weights and name.startswith("pooler/"):
                continue  # an MLM-pretrained encoder has no pooler: it starts from its initializer
            if name not in weights:
                if strict:
                    raise IncompatibleModelError(f"layer {layer.name!r}: checkpoint has no weight {name!r}. "
                                                 "Remedy: point model.checkpoint at a BERT checkpoint")
                continue
            value = weights[name]
            if tuple(value.shape) != tuple(var.shape):
                if name == "embeddings/position_embeddings/embeddings" and value.shape[0] > var.shape[0]:
                    value = value[: var.shape[0]]
                else:
                    raise IncompatibleModelError(
                        f"layer {layer.name!r}: weight {name!r} has shape {tuple(value.shape)} in the checkpoint "
                        f"but {tuple(var.shape)} in the model. Remedy: match model.bert to the checkpoint")
            var.assign(value)
            loaded.append(name)
    return loaded


# -- checkpoints ----------------------------------------------------------------------------------------
def resolve_checkpoint(path) -> dict:
    """Describe a checkpoint dir: a Hugging Face dir (BERT, RoBERTa, DistilBERT) or a tfresp run (``RUN/bert``).

    Returns:
        dict with ``kind`` (``transformers`` | ``tfresp``), ``config`` (:class:`BertConfig`), ``vocab`` (tokens
        by id), ``lowercase``, ``tokenizer_file``, ``weights`` (a loader callable returning canonical names) and
        ``path``; a transformers dir also has ``weights_file`` (``model.safetensors`` | ``tf_model.h5``).
    """
    kind, p = checkpoint_dir(path)
    if kind == "tfresp":
        meta = json.loads((p / CONFIG_FILE).read_text())
        cfg = BertConfig(**meta["bert"])
        return {**checkpoint_vocab(p), "config": cfg, "max_length": meta.get("max_length"),
                "weights": lambda: dict(np.load(p / WEIGHTS_FILE))}
    if hf_loading.is_hf_dir(p):
        cfg = BertConfig.from_hf(json.loads((p / "config.json").read_text()))
        return {**checkpoint_vocab(p), "config": cfg, "max_length": None,
                "weights_file": hf_loading.weights_file(p),
                "weights": lambda: hf_loading.read_weights(p, cfg.model_type)}
    raise ConfigError([("model.checkpoint", str(path),
                        "expected " + CHECKPOINT_LAYOUTS)])


def save_checkpoint(model: keras.Model, cfg: BertConfig, directory, vocab_path, lowercase: bool,
                    max_length: int, extra: Optional[dict] = None) -> Path:
    """Write ``bert_config.json``, ``weights.npz`` (transformers names) and ``vocab.txt`` to ``directory``."""
    import shutil

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / WEIGHTS_FILE, **named_weights(model, include_all=True))
    (d / CONFIG_FILE).write_text(json.dumps({"bert": cfg.to_json(), "lowercase": lowercase,
                                             "max_length": max_length, **(extra or {})}, indent=1))
    shutil.copyfile(vocab_path, d / "vocab.txt")
    return d


# -- config -> model ------------------------------------------------------------------------------------
_BERT_KEYS = {"hidden": "hidden_size", "layers": "num_layers", "heads": "num_heads",
              "intermediate": "intermediate_size", "max_position": "max_position"}


def config_from_model_section(mc, vocab_size: int, max_length: int) -> BertConfig:
    """:class:`BertConfig` from ``model.bert`` (``hidden``, ``layers``, ``heads``, ``intermediate``)."""
    spec = dict(mc.bert or {})
    problems = []
    kw = {}
    for k, v in spec.items():
        if k not in _BERT_KEYS:
            problems.append((f"model.bert.{k}", v, f"unknown key; expected one of {sorted(_BERT_KEYS)}"))
        elif not isinstance(v, int) or v <= 0:
            problems.append((f"model.bert.{k}", v, "a positive integer"))
        else:
            kw[_BERT_KEYS[k]] = v
    if problems:
        raise ConfigError(problems)
    kw.setdefault("intermediate_size", 4 * kw.get("hidden_size", 64))
    kw.setdefault("max_position", max(128, max_length))
    if kw["max_position"] < max_length:
        raise ConfigError([("model.bert.max_position", kw["max_position"], f">= data.max_length ({max_length})")])
    return BertConfig(vocab_size=vocab_size, dropout=mc.dropout, attention_dropout=mc.dropout, **kw)


def apply_freeze(core: keras.Model, freeze, num_layers: int) -> List[str]:
    """Freeze ``embeddings`` | first ``N`` encoder layers (+ embeddings) | ``all-but-head``; returns frozen layers."""
    frozen = []
    for layer in core.layers:
        n = layer.name
        is_emb = n.startswith("embeddings_")
        block = int(n.split("_")[1]) if n.startswith("layer_") and n.split("_")[1].isdigit() else None
        if freeze == "embeddings":
            hit = is_emb
        elif freeze == "all-but-head":
            hit = is_emb or block is not None
        elif isinstance(freeze, int):
            hit = is_emb or (block is not None and block < freeze)
        else:
            hit = False
        if hit and layer.weights and "_lora_" not in n and "_adapter_" not in n:
            layer.trainable = False
            frozen.append(n)
    return frozen


def _build(config, data, cfg: BertConfig, weights=None, source=None):
    from tfresp.models import peft as peft_mod

    mc = config.model
    max_length = data.extra["max_length"]
    if config.task == "mlm":
        if mc.lora or mc.adapters:
            raise ConfigError([("model.lora", mc.lora or mc.adapters, "LoRA/adapters apply to fine-tuning "
                                "(task: classification), not to mlm pretraining")])
        core = build_mlm(cfg, max_length)
    else:
        peft = peft_mod.parse(mc)
        core = build_classifier(cfg, data.num_classes, max_length, peft)
    extra = {"bert": cfg.to_json(), "max_length": max_length}
    if weights is not None:
        loaded = assign_named_weights(core, weights, strict=True)
        extra["loaded_weights"] = len(loaded)
        extra["checkpoint_kind"] = source
    if isinstance(mc.freeze, int) and not 0 <= mc.freeze <= cfg.num_layers:
        raise ConfigError([("model.freeze", mc.freeze, f"0..{cfg.num_layers} (encoder layers)")])
    frozen = apply_freeze(core, mc.freeze, cfg.num_layers)
    peft_info = peft_mod.apply_trainability(core, mc) if config.task != "mlm" else None
    if peft_info:
        extra.update(peft_info)
    if frozen:
        extra["frozen_layers"] = frozen
    if config.privacy is not None:
        extra["dp_layer_support"] = dp_layer_support(core)
    data.extra.setdefault("model_extra", {}).update(extra)
    data.extra["bert_config"] = cfg
    return core


def dp_layer_support(core: keras.Model) -> dict:
    """Which trainable layers tfresp's ghost-clipping rules (:mod:`tfresp.privacy.ghost`) cover.

    Embedding gathers are covered, so embeddings stay trainable under DP.
    Dropout layers (``model.dropout > 0``) make the privacy concern fall back to vectorized clipping.
    """
    try:
        from tfresp.privacy.ghost import GHOST_LAYERS
    except ImportError:  # privacy adapter unavailable: report nothing rather than guess
        return {}
    supported, other = set(), set()
    for layer in core.layers:
        if layer.trainable_weights:
            (supported if type(layer) in GHOST_LAYERS.values() else other).add(layer.__class__.__name__)
    stochastic = sorted(l.name for l in core.layers if isinstance(l, keras.layers.Dropout))
    return {"registry_supported": sorted(supported), "registry_unsupported": sorted(other),
            "embeddings_frozen_for_dp": False, "dropout_layers": stochastic}


@register_model("bert")
def _bert(config, data):
    if data.kind != "text":
        raise ConfigError([("model.kind", "bert", f"BERT needs text data (set data.text), but the data is {data.kind}")])
    if config.model.checkpoint:
        ck = resolve_checkpoint(config.model.checkpoint)
        return _build(config, data, _head(ck["config"], config.model), ck["weights"](), ck["kind"])
    cfg = config_from_model_section(config.model, data.extra["vocab_size"], data.extra["max_length"])
    return _build(config, data, _head(cfg, config.model))


def _head(cfg: BertConfig, mc) -> BertConfig:
    """``cfg`` with the run's pooling (``model.pooling``; default ``cls``, the pretrained pooler)."""
    return dataclasses.replace(cfg, pooling=mc.pooling or "cls")


@register_model("checkpoint")
def _checkpoint(config, data):
    if data.kind != "text":
        raise ConfigError([("model.kind", "checkpoint", "a BERT checkpoint needs text data (set data.text)")])
    if not config.model.checkpoint:
        raise ConfigError([("model.checkpoint", None, "a path to a transformers TF checkpoint or a tfresp run")])
    ck = resolve_checkpoint(config.model.checkpoint)
    cfg = dataclasses.replace(_head(ck["config"], config.model), dropout=config.model.dropout,
                              attention_dropout=config.model.dropout)
    if data.extra["max_length"] > cfg.longest_input:
        raise ConfigError([("data.max_length", data.extra["max_length"],
                            f"<= the checkpoint's longest input ({cfg.longest_input} positions)")])
    return _build(config, data, cfg, ck["weights"](), ck["kind"])


# -- students for distillation --------------------------------------------------------------------------
def spread_layers(teacher_layers: int, student_layers: int) -> List[int]:
    """Teacher layers a ``student_layers``-deep student starts from: evenly spread, first and last kept.

    The rule of DistilBERT's initialization script (Sanh et al., 2019; transformers
    ``examples/research_projects/distillation/scripts/extract_distilbert.py`` copies layers
    ``[0, 2, 4, 7, 9, 11]`` of BERT-base, which is this function's ``(12, 6)``). For 6 -> 2 it gives
    ``[0, 5]``: the first layer (which reads the embeddings) and the last (whose output the fine-tuned
    pooler and classifier were trained on).
    """
    if not 1 <= student_layers <= teacher_layers:
        raise ValueError(f"Invalid value for argument `student_layers`. Received: student_layers={student_layers}. "
                         f"Expected 1..{teacher_layers} (the teacher's layers)")
    if student_layers == 1:
        return [teacher_layers - 1]
    return [int(round(v)) for v in np.linspace(0, teacher_layers - 1, student_layers)]


def build_student(teacher: keras.Model, cfg: BertConfig, num_classes: int, teacher_layers: List[int],
                  max_length: int = 128, name: str = "student", **classifier_kwargs) -> keras.Model:
    """A shallower BERT classifier initialized from ``teacher`` ("layer dropping", Sajjad et al., 2023).

    The student has ``len(teacher_layers)`` encoder layers of the teacher's width; its layer ``j`` gets the
    weights of teacher layer ``teacher_layers[j]``, and the embeddings, pooler and classifier are copied
    as they are. ``classifier_kwargs`` go to :func:`build_classifier` (they must build the teacher's head).

    Raises:
        IncompatibleModelError: a student weight has no teacher counterpart of the same shape.
    """
    bad = [i for i in teacher_layers if not 0 <= int(i) < cfg.num_layers]
    if not teacher_layers or bad or len(set(teacher_layers)) != len(teacher_layers):
        raise ConfigError([("compression.distill.teacher_layers", list(teacher_layers),
                            f"distinct layer indices in 0..{cfg.num_layers - 1}")])
    scfg = dataclasses.replace(cfg, num_layers=len(teacher_layers))
    student = build_classifier(scfg, num_classes, max_length, name=name, **classifier_kwargs)
    source = {layer.name: layer for layer in teacher.layers}
    for layer in student.layers:
        if not layer.weights:
            continue
        tname = layer.name
        if tname.startswith("layer_"):
            j, _, rest = tname[len("layer_"):].partition("_")
            tname = f"layer_{int(teacher_layers[int(j)])}_{rest}"
        t = source.get(tname)
        values = t.get_weights() if t is not None else None
        if values is None or [v.shape for v in values] != [tuple(w.shape) for w in layer.weights]:
            raise IncompatibleModelError(
                f"student layer {layer.name!r}: the teacher has no layer {tname!r} with the same weight shapes. "
                "Remedy: distill from a plain tfresp BERT classifier (merge LoRA first; adapters are not copied)")
        layer.set_weights(values)
    return student
