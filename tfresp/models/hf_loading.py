"""Read Hugging Face BERT-family checkpoints (BERT, RoBERTa, DistilBERT, ELECTRA) into the functional Keras BERT.

A local Hugging Face directory holds ``config.json`` and either ``model.safetensors`` (PyTorch parameter names,
``[out, in]`` linear weights; possibly sharded with ``model.safetensors.index.json``) or a transformers TF
``tf_model.h5``. Both are read without transformers or torch (``safetensors``' numpy API and ``h5py``) and
renamed to one canonical naming, the transformers TF BERT names (``encoder/layer_._0/attention/self/query/kernel``)
that :func:`tfresp.models.bert.assign_named_weights` loads. So every family runs through the same functional model:

- RoBERTa (Liu et al., 2019) is BERT with a one-row token-type table, position ids that start at
  ``pad_token_id + 1`` (padding tokens get ``pad_token_id``) and a byte-level BPE tokenizer.
- DistilBERT (Sanh et al., 2019) is BERT without token types and without a pretrained pooler (a classifier's
  pooler starts from its initializer); only the names differ
  (``transformer/layer_._0/attention/q_lin`` ...).
- ELECTRA (Clark et al., 2020; the discriminator encoder) is BERT without a pooler whose embeddings may be
  narrower than the hidden size, followed by a dense ``embeddings_project``.

The name tables are written here rather than borrowed from transformers because transformers v5 dropped
TensorFlow and its TF loader fails on PyTorch-saved safetensors from 4.55 on (transformers issue 40028).

Example:
    >>> cfg, weights = read_checkpoint("~/models/distilbert-base-uncased")
    >>> model = bert.build_hidden_model(cfg); bert.assign_named_weights(model, weights)
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from tfresp.errors import ConfigError, IncompatibleModelError

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
H5 = "tf_model.h5"

# family-specific dotted names -> BERT dotted names (applied in order, on names without the model prefix)
_RENAMES = {
    "bert": [],
    "roberta": [],
    "electra": [],
    "distilbert": [
        (r"^transformer\.layer\.", "encoder.layer."),
        (r"\.attention\.q_lin\.", ".attention.self.query."),
        (r"\.attention\.k_lin\.", ".attention.self.key."),
        (r"\.attention\.v_lin\.", ".attention.self.value."),
        (r"\.attention\.out_lin\.", ".attention.output.dense."),
        (r"\.sa_layer_norm\.", ".attention.output.LayerNorm."),
        (r"\.ffn\.lin1\.", ".intermediate.dense."),
        (r"\.ffn\.lin2\.", ".output.dense."),
        (r"\.output_layer_norm\.", ".output.LayerNorm."),
    ],
}
FAMILIES = tuple(_RENAMES)
_ENCODER_ROOTS = ("embeddings.", "embeddings_project.", "encoder.", "pooler.", "transformer.")
_EXACT_GELU = ("gelu", "gelu_python")  # erf GELU; gelu_new / gelu_fast are the tanh approximation


@dataclasses.dataclass
class BertConfig:
    """Architecture hyper-parameters of :mod:`tfresp.models.bert` (transformers ``BertConfig`` names in ``from_hf``).

    Defined here, beside the reader of transformers configs, so the loader needs nothing from the model builder.
    """

    vocab_size: int = 8000
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 256
    max_position: int = 128
    type_vocab_size: int = 2
    dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    # family (tfresp.models.hf_loading.FAMILIES): "roberta" sets position_padding_idx, "distilbert" has no
    # token types (type_vocab_size=0) and no pretrained pooler
    model_type: str = "bert"
    position_padding_idx: Optional[int] = None
    embedding_size: Optional[int] = None  # ELECTRA: embeddings narrower than hidden, then a projection
    # classifier head (tfresp.models.bert.pool): "cls" = tanh pooler on [CLS] (Devlin et al.); "mean" = masked
    # mean of the last hidden states, no pooler (Reimers & Gurevych, 2019)
    pooling: str = "cls"

    @classmethod
    def from_hf(cls, d: dict) -> "BertConfig":
        """From a transformers ``config.json`` dict (BERT, RoBERTa or DistilBERT)."""
        return config_from_hf(d)

    @property
    def longest_input(self) -> int:
        """Longest input the position table covers (RoBERTa's positions start after ``padding_idx``)."""
        offset = 0 if self.position_padding_idx is None else self.position_padding_idx + 1
        return self.max_position - offset

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def model_type(hf_config: dict, where: str = "model.checkpoint") -> str:
    """The checkpoint's family (``config.json`` ``model_type``), refused with a remedy when unsupported."""
    kind = hf_config.get("model_type", "bert")
    if kind not in FAMILIES:
        raise IncompatibleModelError(
            f"`{where}`: the checkpoint is a {kind!r} model. Received: model_type={kind!r}. "
            f"Remedy: use a checkpoint of one of {list(FAMILIES)} (MiniLM and most sentence encoders are 'bert')")
    return kind


def config_from_hf(d: dict):
    """:class:`BertConfig` from a transformers ``config.json`` dict of a supported family."""
    kind = model_type(d)
    if kind == "distilbert":
        act = d.get("activation", "gelu")
        if d.get("sinusoidal_pos_embds"):
            raise IncompatibleModelError("`model.checkpoint`: the DistilBERT checkpoint uses sinusoidal position "
                                         "embeddings. Received: sinusoidal_pos_embds=true. Remedy: use a "
                                         "checkpoint with learned position embeddings (the default)")
        keys = dict(vocab_size=d["vocab_size"], hidden_size=d["dim"], num_layers=d["n_layers"],
                    num_heads=d["n_heads"], intermediate_size=d["hidden_dim"],
                    max_position=d["max_position_embeddings"], type_vocab_size=0,
                    dropout=d.get("dropout", 0.1), attention_dropout=d.get("attention_dropout", 0.1),
                    layer_norm_eps=1e-12, initializer_range=d.get("initializer_range", 0.02))
    else:
        act = d.get("hidden_act", "gelu")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise IncompatibleModelError(
                "`model.checkpoint`: the checkpoint uses relative position embeddings. Received: "
                f"position_embedding_type={d.get('position_embedding_type')!r}. Remedy: use an absolute-position "
                "checkpoint")
        keys = dict(vocab_size=d["vocab_size"], hidden_size=d["hidden_size"], num_layers=d["num_hidden_layers"],
                    num_heads=d["num_attention_heads"], intermediate_size=d["intermediate_size"],
                    max_position=d["max_position_embeddings"], type_vocab_size=d.get("type_vocab_size", 2),
                    dropout=d.get("hidden_dropout_prob", 0.1),
                    attention_dropout=d.get("attention_probs_dropout_prob", 0.1),
                    layer_norm_eps=d.get("layer_norm_eps", 1e-12), initializer_range=d.get("initializer_range", 0.02))
        if kind == "roberta":
            keys["position_padding_idx"] = int(d.get("pad_token_id", 1))
        if kind == "electra" and d.get("embedding_size", d["hidden_size"]) != d["hidden_size"]:
            keys["embedding_size"] = int(d["embedding_size"])
    if act not in _EXACT_GELU:
        raise IncompatibleModelError(
            f"`model.checkpoint`: the checkpoint uses the activation {act!r}. Received: {act!r}. Remedy: use a "
            "checkpoint with exact (erf) 'gelu', which the functional BERT implements")
    return BertConfig(model_type=kind, **keys)


# -- reading tensors ------------------------------------------------------------------------------------
def read_safetensors(directory) -> Dict[str, np.ndarray]:
    """All tensors of ``model.safetensors`` (or its shards) as float32 numpy arrays, names as stored."""
    from safetensors.numpy import load_file

    d = Path(directory)
    if (d / SAFETENSORS_INDEX).exists():
        shards = sorted(set(json.loads((d / SAFETENSORS_INDEX).read_text())["weight_map"].values()))
    else:
        shards = [SAFETENSORS]
    out = {}
    for shard in shards:
        try:
            out.update(load_file(str(d / shard)))
        except (TypeError, ValueError) as e:  # e.g. bfloat16, which numpy has no dtype for
            raise IncompatibleModelError(
                f"`model.checkpoint`: {shard} cannot be read with numpy. Received: {e}. Remedy: save the checkpoint "
                "in float32 or float16 (model.to(torch.float32).save_pretrained(dir))") from e
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


def read_h5(path) -> Dict[str, np.ndarray]:
    """All datasets of a transformers ``tf_model.h5``, names without the ``:0`` suffix."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name.split(":")[0]] = np.asarray(obj, dtype=np.float32)

        f.visititems(visit)
    return out


# -- renaming to the canonical (transformers TF BERT) names ------------------------------------------
def _strip_prefix(name: str, kind: str, sep: str) -> str:
    """``bert.encoder...`` / ``tf_bert_model/bert/encoder...`` -> ``encoder...`` (None for heads)."""
    marker = f"{kind}{sep}"
    if (sep + name).rfind(sep + marker) >= 0:
        name = (sep + name).rsplit(sep + marker, 1)[1]
    name = name.replace(sep, ".") if sep == "/" else name
    return name if name.startswith(_ENCODER_ROOTS) else None


def _rename(dotted: str, kind: str) -> str:
    for pattern, repl in _RENAMES[kind]:
        dotted = re.sub(pattern, repl, dotted)
    return dotted


def from_pytorch_names(state: Dict[str, np.ndarray], kind: str) -> Dict[str, np.ndarray]:
    """PyTorch-named tensors -> canonical TF names; linear weights are transposed to Keras ``[in, out]``."""
    out = {}
    for name, value in state.items():
        dotted = _strip_prefix(name, kind, ".")
        if dotted is None:
            continue  # task heads (classifier, lm_head, cls.predictions ...) are not part of the encoder
        dotted = _rename(dotted, kind)
        module, _, leaf = dotted.rpartition(".")
        if module.endswith("LayerNorm"):
            leaf = {"weight": "gamma", "bias": "beta"}.get(leaf, leaf)  # old checkpoints already say gamma/beta
        elif module.endswith("_embeddings"):
            leaf = "weight" if module.endswith("word_embeddings") else "embeddings"
        elif leaf == "weight":
            leaf, value = "kernel", value.T
        out[_tf_path(module, leaf)] = value
    return out


def from_tf_names(state: Dict[str, np.ndarray], kind: str) -> Dict[str, np.ndarray]:
    """transformers-TF-named tensors (``tf_model.h5``, or safetensors saved by TF) -> canonical TF names."""
    out = {}
    for name, value in state.items():
        dotted = _strip_prefix(name, kind, "/")
        if dotted is None:
            continue
        dotted = re.sub(r"layer_\._(\d+)", r"layer.\1", dotted)
        module, _, leaf = _rename(dotted, kind).rpartition(".")
        out[_tf_path(module, leaf)] = value
    return out


def _tf_path(module: str, leaf: str) -> str:
    return re.sub(r"(^|/)layer/(\d+)(/|$)", r"\1layer_._\2\3", module.replace(".", "/")) + "/" + leaf


# -- a checkpoint directory ---------------------------------------------------------------------------
def is_hf_dir(directory) -> bool:
    d = Path(directory)
    return (d / "config.json").exists() and any((d / f).exists() for f in (SAFETENSORS, SAFETENSORS_INDEX, H5))


def weights_file(directory) -> str:
    """The weights this directory is read from: safetensors when present, else ``tf_model.h5``."""
    d = Path(directory)
    if (d / SAFETENSORS).exists() or (d / SAFETENSORS_INDEX).exists():
        return SAFETENSORS
    if (d / H5).exists():
        return H5
    raise ConfigError([("model.checkpoint", str(d), f"has config.json but neither {SAFETENSORS} nor {H5}")])


def read_weights(directory, kind: str) -> Dict[str, np.ndarray]:
    """Canonical encoder weights of a Hugging Face directory (safetensors preferred over ``tf_model.h5``)."""
    d = Path(directory)
    if weights_file(d) == H5:
        return from_tf_names(read_h5(d / H5), kind)
    state = read_safetensors(d)
    tf_named = any("/" in k for k in state)  # transformers' TF save_pretrained(safe_serialization=True)
    weights = from_tf_names(state, kind) if tf_named else from_pytorch_names(state, kind)
    if not weights:
        raise IncompatibleModelError(
            f"`model.checkpoint`: no {kind} encoder tensors in {d / SAFETENSORS}. Received: names such as "
            f"{sorted(state)[:3]}. Remedy: point at a {kind} checkpoint saved by transformers")
    return weights


def read_checkpoint(directory) -> Tuple[BertConfig, Dict[str, np.ndarray]]:
    """``(BertConfig, canonical weights)`` of a local Hugging Face directory."""
    d = Path(directory).expanduser()
    cfg = config_from_hf(json.loads((d / "config.json").read_text()))
    return cfg, read_weights(d, cfg.model_type)
