"""Bookkeeping for runs with a BERT core: report info, LoRA merge for export, reusable checkpoint.

After training, a LoRA model is merged (``W + (alpha/r) A B``; Hu et al., 2022) into a plain BERT
that the SavedModel export serves (``ctx.state["export_core"]``), and the merged weights are saved
under ``RUN/bert/`` in transformers naming, so ``model.checkpoint: RUN`` fine-tunes from this run.
"""
from __future__ import annotations

import numpy as np

from tfresp.concerns import Concern, Contribution, register
from tfresp.models import bert as bert_mod


@register
class BertModelRun(Concern):
    """Enabled for ``model.kind`` ``bert`` / ``checkpoint``; writes ``model_extra`` and ``RUN/bert``."""

    config_key = "bert_model"
    order = 95  # after every concern that may wrap the core

    def enabled(self, config) -> bool:
        return config.model.kind in ("bert", "checkpoint")

    def plan(self, ctx) -> Contribution:
        extra = ctx.state.setdefault("model_extra", {})
        extra.update(ctx.data.extra.get("model_extra", {}))
        notes = []
        support = extra.get("dp_layer_support")
        if support:
            notes.append("DP: trainable layer types covered by tf-privacy's fast-clipping registry: "
                         f"{support['registry_supported']}; others: {support['registry_unsupported']}; "
                         "embeddings stay trainable (the Embedding gather has a registry function)")
        return Contribution(notes=notes)

    def audit(self, ctx):
        cfg = ctx.data.extra["bert_config"]
        mc = ctx.config.model
        export_core = ctx.core
        extra = ctx.state.setdefault("model_extra", {})
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
            ctx.state["export_core"] = merged
            export_core = merged
        pre = ctx.data.preprocessor
        vocab_tmp = ctx.run_dir / "preprocessing"
        pre.save(vocab_tmp)
        bert_mod.save_checkpoint(export_core, cfg, ctx.run_dir / bert_mod.CHECKPOINT_DIR, vocab_tmp / "vocab.txt",
                                 pre.lowercase, pre.max_length,
                                 {"task": ctx.config.task, "classes": list(ctx.data.classes)})
        ctx.artifacts["bert_checkpoint"] = bert_mod.CHECKPOINT_DIR
        return None
