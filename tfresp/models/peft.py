"""Parameter-efficient fine-tuning for the functional BERT: LoRA and bottleneck adapters.

* LoRA (Hu et al., 2022, "LoRA: Low-Rank Adaptation of Large Language Models"): a frozen projection
  ``W x`` gets a trainable branch ``(alpha / r) * B(A(x))`` with ``A: d -> r`` and ``B: r -> d``
  (``B`` starts at zero, so training starts from the pretrained function). Both branch matrices are
  plain ``Dense`` layers, so DP ghost clipping covers them. At export the branch is merged,
  ``W' = W + (alpha / r) A B``, and the exported graph has no LoRA layers (:func:`tfresp.models.bert.merge_lora`).
* Adapters (Houlsby et al., 2019, "Parameter-Efficient Transfer Learning for NLP"): a residual
  bottleneck ``x + Up(gelu(Down(x)))`` after the attention output and after the feed-forward output;
  ``Up`` starts at zero. Adapters, LayerNorms and the head train; everything else is frozen.

Example:
    >>> cfg = load_config({..., "model": {"kind": "checkpoint", "checkpoint": path,
    ...                                  "lora": {"rank": 8, "alpha": 16, "targets": ["query", "value"]}}})
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import tf_keras as keras

from tfresp.errors import ConfigError
from tfresp.models.layers import gelu

LORA_TARGETS = ("query", "key", "value", "attention_output", "intermediate", "output")
_LORA_KEYS = {"rank", "alpha", "targets"}
_ADAPTER_KEYS = {"size"}
HEAD_LAYERS = ("pooler", "classifier")


def parse(mc) -> Optional[dict]:
    """Validate ``model.lora`` / ``model.adapters``; returns ``{"lora": {...}, "adapters": {...}}`` or None."""
    problems = []
    out = {}
    if mc.lora is not None:
        lora = {"rank": 8, "alpha": 16.0, "targets": ["query", "value"], **dict(mc.lora)}
        for k in sorted(set(lora) - _LORA_KEYS):
            problems.append((f"model.lora.{k}", lora[k], f"unknown key; expected one of {sorted(_LORA_KEYS)}"))
        if not isinstance(lora["rank"], int) or lora["rank"] <= 0:
            problems.append(("model.lora.rank", lora["rank"], "a positive integer"))
        if not isinstance(lora["alpha"], (int, float)) or lora["alpha"] <= 0:
            problems.append(("model.lora.alpha", lora["alpha"], "a positive number"))
        targets = lora["targets"]
        if not isinstance(targets, list) or not targets or any(t not in LORA_TARGETS for t in targets):
            problems.append(("model.lora.targets", targets, f"a non-empty list from {list(LORA_TARGETS)}"))
        out["lora"] = lora
    if mc.adapters is not None:
        ad = {"size": 64, **dict(mc.adapters)}
        for k in sorted(set(ad) - _ADAPTER_KEYS):
            problems.append((f"model.adapters.{k}", ad[k], f"unknown key; expected one of {sorted(_ADAPTER_KEYS)}"))
        if not isinstance(ad["size"], int) or ad["size"] <= 0:
            problems.append(("model.adapters.size", ad["size"], "a positive integer (bottleneck width)"))
        out["adapters"] = ad
    if problems:
        raise ConfigError(problems)
    return out or None


def is_lora_target(layer_name: str, lora: dict) -> bool:
    """``layer_3_query`` is a target when ``query`` is in ``lora['targets']``."""
    parts = layer_name.split("_", 2)
    return len(parts) == 3 and parts[0] == "layer" and parts[2] in lora["targets"]


def lora_scale(lora: dict) -> float:
    return float(lora["alpha"]) / float(lora["rank"])


def lora_branch(x, base_out, name: str, lora: dict):
    """``base_out + (alpha/r) * B(A(x))`` with ``B`` initialised to zero."""
    width = base_out.shape[-1]
    a = keras.layers.Dense(lora["rank"], use_bias=False, name=f"{name}_lora_a",
                           kernel_initializer=keras.initializers.HeUniform())(x)
    b = keras.layers.Dense(width, use_bias=False, kernel_initializer="zeros", name=f"{name}_lora_b")(a)
    b = keras.layers.Rescaling(lora_scale(lora), name=f"{name}_lora_scale")(b)
    return keras.layers.Add(name=f"{name}_lora_add")([base_out, b])


def adapter(x, name: str, spec: dict, hidden: int):
    """Residual bottleneck adapter ``x + Up(gelu(Down(x)))`` (identity at initialisation)."""
    d = keras.layers.Dense(spec["size"], activation=gelu, name=f"{name}_down",
                           kernel_initializer=keras.initializers.TruncatedNormal(stddev=1e-3))(x)
    u = keras.layers.Dense(hidden, kernel_initializer="zeros", name=f"{name}_up")(d)
    return keras.layers.Add(name=f"{name}_residual")([x, u])


def is_peft_layer(name: str) -> bool:
    return "_lora_" in name or "_adapter_" in name


def apply_trainability(core: keras.Model, mc) -> Optional[dict]:
    """Freeze the backbone when LoRA/adapters are on; returns report info for ``model_extra``."""
    spec = parse(mc)
    if not spec:
        return None
    peft_params = 0
    for layer in core.layers:
        n = layer.name
        keep = is_peft_layer(n) or n in HEAD_LAYERS
        if "adapters" in spec and isinstance(layer, keras.layers.LayerNormalization):
            keep = True  # Houlsby et al. train the LayerNorms together with the adapters
        if layer.weights:
            layer.trainable = keep
        if is_peft_layer(n):
            peft_params += int(sum(np.prod(w.shape) for w in layer.weights))
    info = {"peft": {"methods": sorted(spec), "peft_parameters": peft_params}}
    if "lora" in spec:
        info["lora"] = {"rank": spec["lora"]["rank"], "alpha": spec["lora"]["alpha"],
                        "targets": spec["lora"]["targets"], "scale": lora_scale(spec["lora"])}
    if "adapters" in spec:
        info["adapters"] = {"size": spec["adapters"]["size"], "placement": "after attention and feed-forward"}
    return info


def merge_lora_weights(core: keras.Model, merged: keras.Model, mc) -> keras.Model:
    """Copy ``core``'s weights into ``merged`` (the same model built without LoRA branches), target kernels
    becoming ``W + (alpha/r) A B``; returns ``merged``. :func:`tfresp.models.bert.merge_lora` builds ``merged``.

    Every non-LoRA layer keeps its weights and trainability; the result computes the same function as ``core``
    (up to float rounding) with the plain graph (no extra matmuls at serving time).
    """
    lora = (parse(mc) or {}).get("lora")
    for layer in merged.layers:
        if not layer.weights:
            continue
        src = core.get_layer(layer.name)
        weights = src.get_weights()
        if lora is not None and is_lora_target(layer.name, lora):
            a = core.get_layer(f"{layer.name}_lora_a").get_weights()[0]
            b = core.get_layer(f"{layer.name}_lora_b").get_weights()[0]
            weights[0] = weights[0] + lora_scale(lora) * (a @ b)
        layer.set_weights(weights)
    for layer in merged.layers:
        layer.trainable = core.get_layer(layer.name).trainable
    return merged
