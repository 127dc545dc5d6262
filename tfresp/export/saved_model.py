"""SavedModel export whose ``serving_default`` takes raw feature columns.

The fitted preprocessing (a :class:`~tfresp.data.preprocess.TabularPreprocessor`, or a text
tokenizer module) travels inside the graph, so ``serving_default(age=[39.], sex=[b"Male"], ...)``
returns probabilities for raw rows. Written to a temporary directory and renamed into place.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import tensorflow as tf


class ServingModule(tf.Module):
    """Preprocessing + core model (+ optional post-processing) behind one signature."""

    def __init__(self, preprocessor, core, classes, postprocess=None):
        super().__init__(name="tfresp_serving")
        self.preprocessor = preprocessor
        self.core = core
        self.classes = tf.constant([str(c) for c in classes])
        self.postprocess = postprocess

    def predict_raw(self, inputs):
        x = self.preprocessor.transform(inputs)
        logits = self.core(x, training=False)
        proba = tf.nn.softmax(logits)
        out = {"logits": logits, "probabilities": proba}
        if self.postprocess is not None:
            class_id = self.postprocess(inputs, proba)
        else:
            class_id = tf.argmax(proba, axis=1)
        out["class_id"] = class_id
        out["class_name"] = tf.gather(self.classes, class_id)
        return out


def build_serving_module(ctx):
    post = ctx.state.get("serving_postprocess")
    core = ctx.state.get("export_core", ctx.core)  # e.g. LoRA merged into the base weights
    return ServingModule(ctx.data.preprocessor, core, ctx.data.classes, post)


def save_module(module, signature_input, path: Path) -> Path:
    """Save ``module`` with ``serving_default`` over ``signature_input`` atomically to ``path``."""
    fn = tf.function(module.predict_raw, input_signature=[signature_input])
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": fn})
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def raw_inputs(preprocessor, frame, limit=None):
    df = frame if limit is None else frame.iloc[:limit]
    return {k: tf.constant(v) for k, v in preprocessor.frame_to_inputs(df).items()}


def export_saved_model(ctx) -> dict:
    """Export, reload and compare predictions on test rows; record the check in the report."""
    module = build_serving_module(ctx)
    # extra raw string inputs a post-processor needs (e.g. the group column of fairness thresholds)
    extra_inputs = dict(ctx.state.get("serving_extra_inputs", {}))
    signature = {**ctx.data.preprocessor.input_signature(), **extra_inputs}
    path = save_module(module, signature, ctx.run_dir / "saved_model")
    ctx.artifacts["saved_model"] = "saved_model"
    loaded = tf.saved_model.load(str(path))
    sig = loaded.signatures["serving_default"]
    n = min(1000, len(ctx.data.test))
    inputs = raw_inputs(ctx.data.preprocessor, ctx.data.test.frame, n)
    for k in extra_inputs:
        inputs[k] = tf.constant(ctx.data.test.frame[k].astype(str).to_numpy()[:n].astype(object))
    outputs = sig(**inputs)
    served = outputs["probabilities"].numpy()
    direct = ctx.predict_proba(ctx.data.test.x[:n])
    audited = ctx.state.get("served_class_id_test")  # decisions the report's served metrics come from
    mismatches = None if audited is None else int(np.sum(outputs["class_id"].numpy() != np.asarray(audited)[:n]))
    diff = float(np.max(np.abs(served - direct)))
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    section = ctx.report.setdefault("export", {})
    section["saved_model"] = {"path": "saved_model", "signature": "serving_default",
                              "inputs": {k: v.dtype.name for k, v in signature.items()},
                              "outputs": ["logits", "probabilities", "class_id", "class_name"],
                              "roundtrip_rows": n, "roundtrip_max_abs_diff": diff, "bytes": int(size)}
    if mismatches is not None:
        section["saved_model"]["roundtrip_class_id_mismatches"] = mismatches
    return section["saved_model"]
