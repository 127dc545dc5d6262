"""Bookkeeping for runs with a BERT core: report info, LoRA merge for export, reusable checkpoint.

After training, a LoRA model is merged (``W + (alpha/r) A B``; Hu et al., 2022) into a plain BERT
that the SavedModel export serves (``ctx.export_core``), and the merged weights are saved
under ``RUN/bert/`` in transformers naming, so ``model.checkpoint: RUN`` fine-tunes from this run.

A classifier also publishes its embedding split (``ctx.text_parts``), so robustness audits it in
input-embedding space.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfresp.concerns import Contribution, Hook, register_hook
from tfresp.run.context import TextParts
from tfresp.errors import IncompatibleModelError
from tfresp.models import bert as bert_mod


@register_hook
class BertModelRun(Hook):
    """Enabled for ``model.kind`` ``bert`` / ``checkpoint``; writes ``model_extra`` and ``RUN/bert``."""

    config_key = "bert_model"
    audit_after = ("compression",)  # saves and merges the final (stripped) core

    def enabled(self, config) -> bool:
        return config.model.kind in ("bert", "checkpoint")

    def provide(self, ctx) -> None:
        if ctx.config.task == "classification":
            ctx.text_parts = TextParts(embedding_split=embedding_split)

    def plan(self, ctx) -> Contribution:
        extra = ctx.model_extra
        extra.update(ctx.data.extra.get("model_extra", {}))
        notes = []
        support = extra.get("dp_layer_support")
        if support:
            notes.append("DP: trainable layer types covered by tf-privacy's fast-clipping registry: "
                         f"{support['registry_supported']}; others: {support['registry_unsupported']}; "
                         "embeddings stay trainable (the Embedding gather has a registry function)")
        return Contribution(notes=notes)

    def post_fit(self, ctx) -> None:
        """Merge LoRA into the base weights for the export and save the (stripped) core as a BERT checkpoint."""
        cfg = ctx.data.extra["bert_config"]
        mc = ctx.config.model
        export_core = ctx.core
        extra = ctx.model_extra
        if ctx.config.task == "classification" and mc.lora:
            merged = bert_mod.merge_lora(ctx.core, cfg, ctx.data.num_classes, ctx.data.extra["max_length"], mc)
            n = min(256, len(ctx.data.test))
            x = {k: v[:n] for k, v in ctx.data.test.x.items()}
            a = ctx.core.predict(x, batch_size=128, verbose=0)
            b = merged.predict(x, batch_size=128, verbose=0)
            extra.setdefault("lora", {}).update({
                "merged_for_export": True, "merge_check_rows": n,
                "merge_max_abs_logit_diff": float(np.max(np.abs(a - b))),
                "exported_parameters": int(sum(int(np.prod(w.shape)) for w in merged.weights))})
            ctx.export_core = merged
            export_core = merged
        pre = ctx.data.preprocessor
        vocab_tmp = ctx.run_dir / "preprocessing"
        pre.save(vocab_tmp)
        bert_mod.save_checkpoint(export_core, cfg, ctx.run_dir / bert_mod.CHECKPOINT_DIR, vocab_tmp / "vocab.txt",
                                 pre.lowercase, pre.max_length,
                                 {"task": ctx.config.task, "classes": list(ctx.data.classes)})
        ctx.artifacts["bert_checkpoint"] = bert_mod.CHECKPOINT_DIR


#: The attention mask rides along as one extra embedding channel at ±MASK_CHANNEL: no ε-ball of a sensible radius
#: can flip its sign, and the attack space freezes that channel anyway.
MASK_CHANNEL = 1e4


def embedding_split(core: keras.Model):
    """``(embed_fn, head_fn, attackable)`` of a tfresp BERT classifier (see :class:`tfresp.run.context.TextParts`).

    ``embed_fn`` returns the output of the last ``embeddings_*`` layer (word + position + type, LayerNorm, and
    ELECTRA's projection) with the attention mask appended as a last channel; ``head_fn`` runs the encoder and
    classifier on it. ``attackable`` frees every embedding channel and freezes the mask channel. Padding
    positions are not frozen (the mask differs per example), but the attention never reads them, so a
    perturbation there cannot change the logits.
    """
    names = [layer.name for layer in core.layers if layer.name.startswith("embeddings_")]
    inputs = core.input
    if not names or not isinstance(inputs, dict) or "attention_mask" not in inputs:
        raise IncompatibleModelError(f"Invalid value for `model`: {core.name!r} is not a tfresp BERT classifier "
                                     "(no embeddings_* layer or attention_mask input), so it cannot be split into "
                                     "embed_fn/head_fn. Remedy: turn robustness off for this model")
    hidden = core.get_layer(names[-1]).output
    embed = keras.Model(inputs, hidden, name="bert_embed")
    head = keras.Model([hidden, inputs["attention_mask"]], core.output, name="bert_head")
    width = int(hidden.shape[-1])

    def embed_fn(x):
        e = embed(x, training=False)
        m = tf.cast(x["attention_mask"], e.dtype)[..., None]
        return tf.concat([e, (2.0 * m - 1.0) * MASK_CHANNEL], axis=-1)

    def head_fn(e):
        mask = tf.cast(tf.stop_gradient(e[..., -1]) > 0, tf.int32)
        return head([e[..., :-1], mask], training=False)

    attackable = np.concatenate([np.ones(width, np.float32), np.zeros(1, np.float32)])[None, None, :]
    return embed_fn, head_fn, attackable
