"""The fine-tuning recipe for a pretrained text encoder (``train.recipe: auto``), chosen by training-set size.

Small labelled sets are where a textbook fine-tune (3 epochs, [CLS] pooler, one learning rate) loses to
TF-IDF + logistic regression. ``auto`` fills every key the config does not set (explicit keys always win):

* **pooling: mean** over real tokens, no pooler (Reimers & Gurevych, 2019): MiniLM-L6-H384 is the encoder of
  a mean-pooled sentence model, and a randomly re-initialised pooler is one more thing to fit on few rows.
* **LP-FT** (Kumar et al., 2022, "Fine-Tuning can Distort Pretrained Features"): the linear head is first fitted
  on frozen-encoder features (logistic regression, C chosen on the validation split), then everything trains.
* **layer-wise learning-rate decay** 0.9 (Sun et al., 2019; Clark et al., 2020): lower layers move less.
* **AdamW, warmup 10 %, linear decay, grad-norm clip 1, dropout 0.1, more epochs on small data with early
  stopping on validation accuracy restoring the best weights** (Mosbach et al., 2021, "On the Stability of
  Fine-tuning BERT"; the validation loss is a poor signal here: after LP it rises while accuracy still improves,
  as the fine-tuned model grows confident); learning rate by size (``SIZES``), LoRA 5e-4 (Hu et al., 2022).
* **max_length** from the training split's token lengths (99th percentile, a multiple of 8, never above the
  configured one), and **length-grouped batches** (rows of similar length batched together, as in
  transformers' ``group_by_length``): tweets are short, so most padding (CPU time) goes.

Federated runs get no recipe (a central probe or length percentile would pool the clients' rows). Under DP
(``privacy:``) nothing here reads the private rows: no length percentile, no linear probe (a
non-private fit on private rows), no early stopping on private validation rows, no dropout (ghost clipping);
the DP defaults are large batches and a higher learning rate (Li et al., 2022). The number of training rows is
used (as DP-SGD's sampling rate uses it).

The resolved values are written back into the run's config (so ``config.yaml`` reproduces the run) and listed
in the report under ``model.recipe``.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import numpy as np

#: (upper bound on training rows, name, learning rate, epochs, early-stopping patience, batch size)
SIZES = ((1000, "small", 1e-4, 10, 2, 16), (5000, "medium", 8e-5, 6, 2, 32), (math.inf, "large", 5e-5, 4, 1, 32))
LAYER_DECAY = 0.9
LORA_LR = 5e-4


def applies(config) -> bool:
    """``auto`` recipe on a classification fine-tune of a pretrained checkpoint."""
    return (config.train.recipe == "auto" and config.task == "classification" and config.federated is None
            and config.model.kind in ("bert", "checkpoint") and bool(config.model.checkpoint))


def choose(n_train: int, private: bool, lora: bool = False) -> Dict[str, object]:
    """Recipe values ``{"section.key": value}`` for ``n_train`` training rows (pure: no data is read)."""
    size, name, lr, epochs, patience, batch = next(s for s in SIZES if n_train < s[0])
    if private:
        return {"model.pooling": "mean", "model.dropout": 0.0, "train.optimizer": "adam",
                "train.learning_rate": 5e-4, "train.batch_size": int(min(256, max(16, n_train // 8))),
                "train.epochs": 6 if name == "small" else 3, "train.warmup": 0.0, "train.linear_probe": False,
                "train.layer_decay": 1.0, "data.max_length": "configured (lengths of private rows not read)",
                "size_class": name}
    return {"model.pooling": "mean", "model.dropout": 0.1, "train.optimizer": "adamw",
            "train.learning_rate": LORA_LR if lora else lr, "train.weight_decay": 0.01, "train.warmup": 0.1,
            "train.clipnorm": 1.0, "train.batch_size": batch, "train.epochs": epochs,
            "train.early_stopping": patience, "train.early_stopping_monitor": "val_accuracy",
            "train.linear_probe": True,
            "train.layer_decay": 1.0 if lora else LAYER_DECAY, "data.max_length": "p99", "size_class": name}


def length_cap(lengths: np.ndarray, configured: int, quantile: float = 99.0) -> int:
    """Smallest multiple of 8 covering ``quantile`` % of the rows' token counts, at most ``configured``."""
    if len(lengths) == 0:
        return configured
    q = float(np.percentile(lengths, quantile))
    return int(min(configured, max(16, int(math.ceil(q / 8.0)) * 8)))


def apply(config, data) -> Optional[dict]:
    """Resolve the recipe for ``data`` into ``config`` (unset keys only); returns what was chosen."""
    if not applies(config):
        return None
    n = len(data.train)
    private = config.privacy is not None
    values = choose(n, private, lora=bool(config.model.lora))
    sections = {"model": config.model, "train": config.train, "data": config.data}
    chosen, kept = {}, {}
    for key, value in values.items():
        if "." not in key:
            continue
        sec, field = key.split(".")
        target = sections[sec]
        if field in target.model_fields_set:
            kept[key] = getattr(target, field)
            continue
        if key == "data.max_length":
            if isinstance(value, str) and value == "p99":
                value = _shorten(config, data)
            else:
                chosen[key] = value
                continue
        setattr(target, field, value)
        chosen[key] = value
    info = {"name": "auto", "size_class": values["size_class"], "train_rows": n, "private": private,
            "chosen": chosen, "explicit_in_config": kept,
            "references": ["Kumar et al. 2022 (LP-FT)", "Sun et al. 2019 (layer-wise lr decay)",
                           "Mosbach et al. 2021 (more epochs, warmup, early stopping)",
                           "Reimers & Gurevych 2019 (mean pooling)"] + (["Li et al. 2022 (DP)"] if private else [])}
    if not private:
        info["batches"] = "grouped by length (shuffled chunks of 8 batches, sorted by length)"
    data.extra.setdefault("model_extra", {})["recipe"] = info
    return info


def _shorten(config, data) -> int:
    """Re-encode every split at the training split's 99th-percentile length (``data.max_length``)."""
    pre = data.preprocessor
    lengths = data.train.x["attention_mask"].sum(axis=1)
    cap = length_cap(lengths, int(config.data.max_length))
    if cap < pre.max_length:
        pre.max_length = cap
        for split in (data.train, data.validation, data.test):
            if split is not None:
                split.x = pre.transform_frame(split.frame)
        data.extra["max_length"] = cap
        text = (data.extra.get("summary") or {}).get("text")
        if text is not None:
            text["max_length"] = cap
            text["truncated_rows_fraction"] = float(np.mean(lengths >= cap))
    config.data.max_length = cap
    return cap


# -- the run side: LP stage, layer-wise learning rates, length-grouped batches ------------------------------
def layer_multipliers(core, decay: float, num_layers: int) -> Dict[str, float]:
    """``{layer name: learning-rate multiplier}``: head 1, encoder layer i ``decay**(L - i)``, embeddings
    ``decay**(L + 1)`` (LoRA/adapter layers follow their encoder layer)."""
    out = {}
    for layer in core.layers:
        if not layer.weights:
            continue
        name = layer.name
        parts = name.split("_")
        if name.startswith("embeddings_"):
            out[name] = decay ** (num_layers + 1)
        elif parts[0] == "layer" and len(parts) > 1 and parts[1].isdigit():
            out[name] = decay ** (num_layers - int(parts[1]))
        else:
            out[name] = 1.0
    return out


def apply_layer_lrs(optimizer, core, multipliers: Dict[str, float]):
    """Scale each variable's optimizer update by its layer's multiplier (in place; returns ``optimizer``).

    tf_keras optimizers have one learning rate; per-variable rates are done by scaling the update that
    ``update_step`` applies (``w <- w0 + m * (w1 - w0)``), which is exact for any update rule linear in the
    learning rate (Adam, AdamW, SGD with momentum). AdamW's decoupled weight decay (applied before
    ``update_step``) stays at the base rate. Written here because neither tf_keras nor Keras 3 has per-layer
    learning rates.
    """
    import tensorflow as tf

    scale = {}
    for layer in core.layers:
        m = multipliers.get(layer.name, 1.0)
        if m != 1.0:
            for var in layer.trainable_weights:
                scale[optimizer._var_key(var)] = float(m)
    base = optimizer.update_step

    def update_step(gradient, variable):
        m = scale.get(optimizer._var_key(variable))
        if m is None:
            return base(gradient, variable)
        before = tf.identity(variable)
        base(gradient, variable)
        variable.assign(before + m * (variable - before))

    optimizer.update_step = update_step
    optimizer._tfresp_layer_lrs = scale
    return optimizer


def pooled_features(core, x, batch_size: int = 128) -> np.ndarray:
    """Frozen sentence vectors (layer ``pooled`` or ``pooler``) of encoded rows, batched by length."""
    import tf_keras as keras

    name = "pooled" if any(l.name == "pooled" for l in core.layers) else "pooler"
    feat = keras.Model(core.inputs, core.get_layer(name).output)
    lengths = x["attention_mask"].sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    out = np.zeros((len(order), feat.output_shape[-1]), np.float32)
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        width = int(max(8, math.ceil(lengths[idx].max() / 8.0) * 8))
        out[idx] = feat({k: v[idx, :width] for k, v in x.items()}, training=False).numpy()
    return out


def linear_probe(core, data, seed: int = 0) -> dict:
    """LP stage of LP-FT: logistic regression on frozen features -> the ``classifier`` layer's weights."""
    from sklearn.linear_model import LogisticRegression

    xtr = pooled_features(core, data.train.x)
    xva = pooled_features(core, data.validation.x) if data.validation is not None else None
    best = None
    for c in (0.1, 1.0, 10.0) if xva is not None else (1.0,):
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(xtr, data.train.y)
        score = float(np.mean(clf.predict(xva) == data.validation.y)) if xva is not None else float("nan")
        if best is None or score > best[0]:
            best = (score, c, clf)
    score, c, clf = best
    head = core.get_layer("classifier")
    kernel, bias = head.get_weights()
    coef, icpt = clf.coef_, clf.intercept_
    if coef.shape[0] == 1 and kernel.shape[1] == 2:  # binary: sklearn's one logit -> two symmetric logits
        coef, icpt = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-icpt / 2, icpt / 2])
    cols = [int(k) for k in clf.classes_]  # classes absent from training keep their initial weights
    kernel[:, cols] = coef.T
    bias[cols] = icpt
    head.set_weights([kernel, bias])
    return {"C": c, "validation_accuracy": None if math.isnan(score) else score,
            "features": "frozen encoder, " + ("mean pooling" if "pooled" in [l.name for l in core.layers]
                                              else "[CLS] pooler")}


def grouped_dataset(x, y, extras, batch_size: int, seed: int, chunk: int = 8):
    """Batches of rows of similar length: shuffle, cut into chunks of ``chunk`` batches, sort each chunk by
    length, batch, shuffle the batches within a window of ``chunk``; then trim padding per batch."""
    import tensorflow as tf

    from tfresp.data.text import trim_padding

    n = len(y)
    extras = dict(extras)
    extras.setdefault("sample_weight", np.ones(n, dtype=np.float32))
    data = tf.nest.map_structure(tf.convert_to_tensor, (x, y, extras))
    lengths = tf.constant(np.asarray(x["attention_mask"]).sum(axis=1), tf.int32)

    def batches(idx):
        idx = tf.gather(idx, tf.argsort(tf.gather(lengths, idx), stable=True))
        return tf.data.Dataset.from_tensor_slices(idx).batch(batch_size)

    ds = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size * chunk).flat_map(batches)
    ds = ds.shuffle(chunk, seed=seed + 1, reshuffle_each_iteration=True)
    ds = ds.map(lambda idx: tf.nest.map_structure(lambda t: tf.gather(t, idx), data),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.map(trim_padding, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


from tfresp.concerns import Contribution, Hook, register_hook  # noqa: E402  (after the helpers it registers)


def _info(ctx) -> dict:
    return ctx.data.extra.setdefault("model_extra", {}).setdefault("recipe", {"name": ctx.config.train.recipe})


@register_hook
class RecipeRun(Hook):
    """The text fine-tuning model hook: the LP stage (setup), layer-wise learning rates and length-grouped batches
    (plan)."""

    config_key = "text_recipe"
    core_setup = True  # plans first: before any concern wraps the core or the optimizer

    def enabled(self, config) -> bool:
        return config.task == "classification" and config.model.kind in ("bert", "checkpoint")

    def validate(self, ctx) -> None:
        from tfresp.errors import ConfigError

        cfg = ctx.config
        if cfg.train.linear_probe and cfg.privacy is not None:
            raise ConfigError([("train.linear_probe", True, "under privacy a non-private logistic regression "
                                "on the private rows is outside the budget. Remedy: drop train.linear_probe")])
        if cfg.train.linear_probe and cfg.federated is not None:
            raise ConfigError([("train.linear_probe", True, "a central fit on every client's rows is not "
                                "federated training. Remedy: drop train.linear_probe")])

    def setup(self, ctx) -> None:
        """LP-FT's first stage: the linear head fitted on frozen-encoder features, before any concern wraps the
        core."""
        info = _info(ctx)
        if ctx.config.train.linear_probe:
            info["linear_probe"] = linear_probe(ctx.core, ctx.data, ctx.config.seed)

    def plan(self, ctx) -> Contribution:
        cfg = ctx.config
        contrib = Contribution()
        info = _info(ctx)
        private = cfg.privacy is not None
        decay = cfg.train.layer_decay
        if decay is not None and decay != 1.0:
            layers = ctx.data.extra["bert_config"].num_layers
            mult = layer_multipliers(ctx.core, float(decay), layers)
            info["layer_decay"] = {"decay": float(decay), "embeddings": decay ** (layers + 1),
                                   "lowest_layer": decay ** layers, "head": 1.0}
            core = ctx.core  # before any wrapping: its variables are the ones trained
            contrib.optimizer = lambda opt, c: apply_layer_lrs(opt, core, mult)
        if cfg.train.recipe == "auto" and not private and cfg.federated is None and cfg.model.checkpoint:
            contrib.train_dataset = lambda c: grouped_dataset(c.data.train.x, c.data.train.y, c.train_extras,
                                                              c.config.train.batch_size, c.config.seed)
        return contrib
