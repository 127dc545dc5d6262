"""SavedModel export whose ``serving_default`` takes raw feature columns.

The fitted preprocessing (a :class:`~tfresp.data.preprocess.TabularPreprocessor`, or a text
tokenizer module) travels inside the graph, so ``serving_default(age=[39.], sex=[b"Male"], ...)``
returns probabilities for raw rows. Written to a temporary directory and renamed into place.

Input names: a SavedModel signature input must be a valid TensorFlow name, so a column such as
``loan amount``, ``Annual Income ($)`` or ``prêt`` is served under a sanitized name
(``loan_amount``, ``Annual_Income``, ``pret``). Names that are already valid are kept. The mapping
(:func:`serving_layout`) is recorded in the report, in ``preprocessing/serving_inputs.json`` and in
the SavedModel itself (``loaded.serving_inputs()`` returns it as JSON). When the columns are few,
``loaded.predict_columns({raw column name: tensor})`` also takes the raw names directly.

Wide data: with more than :data:`PACK_NUMERIC_ABOVE` numeric columns, the numeric columns are
served as one float32 tensor ``numeric_features[batch, n]`` (column order in the layout): one
signature input and one op per column made export time grow faster than linearly (490 s at 10,000
columns). :func:`signature_inputs` builds the signature's keyword arguments from raw columns.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Dict

import numpy as np
import tensorflow as tf

# input names are decided by the data layer, which checks them before training (_VALID, safe_names re-exported)
from tfresp.data.serving_names import _VALID, PACK_NUMERIC_ABOVE, PACKED_NAME, safe_names, serving_layout  # noqa: F401


def _signature_spec(preprocessor, layout, extra_inputs) -> dict:
    signature = {**dict(preprocessor.input_signature()), **(extra_inputs or {})}
    spec = {raw: tf.TensorSpec(signature[raw].shape, signature[raw].dtype, name=name)
            for raw, name in layout["inputs"].items()}
    if layout["packed"]:
        spec[PACKED_NAME] = tf.TensorSpec([None, len(layout["packed"]["columns"])], tf.float32, name=PACKED_NAME)
    return spec


class ServingModule(tf.Module):
    """Preprocessing + core model (+ optional post-processing) behind one signature."""

    def __init__(self, preprocessor, core, classes, postprocess=None, layout=None):
        super().__init__(name="tfresp_serving")
        self.preprocessor = preprocessor
        self.core = core
        self.classes = tf.constant([str(c) for c in classes])
        self.postprocess = postprocess
        # kept as text: a dict attribute would be tracked (and saved) as a TensorFlow data structure
        self._layout_text = json.dumps(layout or serving_layout(preprocessor), ensure_ascii=False)

    @property
    def layout(self) -> dict:
        return json.loads(self._layout_text)

    def predict_raw(self, inputs):
        """``inputs`` keyed by raw column names (plus ``numeric_features`` when the layout packs)."""
        if self.layout.get("packed"):
            x = self.preprocessor.transform_packed(inputs[PACKED_NAME], inputs)
        else:
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


def build_serving_module(ctx, extra_inputs=None):
    post = ctx.serving.postprocess
    core = ctx.export_core if ctx.export_core is not None else ctx.core  # e.g. LoRA merged into the base weights
    layout = serving_layout(ctx.data.preprocessor, extra_inputs)
    return ServingModule(ctx.data.preprocessor, core, ctx.data.classes, post, layout)


def save_module(module, signature_input, path: Path) -> Path:
    """Save ``module`` with ``serving_default`` over ``signature_input`` atomically to ``path``.

    ``signature_input`` maps raw column names to specs; specs are renamed to the module's layout.
    """
    layout = getattr(module, "layout", None)
    if layout is not None and isinstance(module.preprocessor, tf.Module):
        own = dict(module.preprocessor.input_signature())
        extra = {k: v for k, v in signature_input.items() if k not in own}
        signature_input = _signature_spec(module.preprocessor, layout, extra)
    # autograph off: the serving graph has no data-dependent Python control flow, and converting one
    # loop iteration per column was a large part of the export time of wide data
    fn = tf.function(module.predict_raw, input_signature=[signature_input], autograph=False)
    if layout is not None:
        text = module._layout_text
        module.serving_inputs = tf.function(lambda: tf.constant(text), input_signature=[])
        if not layout.get("packed"):
            module.predict_columns = fn  # the same function keyed by the raw column names
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


def load_layout(loaded):
    """The layout recorded in a loaded tfresp SavedModel (None for exports older than the layout)."""
    fn = getattr(loaded, "serving_inputs", None)
    return json.loads(fn().numpy().decode("utf-8")) if fn is not None else None


def signature_inputs(layout, columns: Dict[str, object]) -> Dict[str, tf.Tensor]:
    """``serving_default`` keyword arguments from ``{raw column name: values}``."""
    if layout is None:
        return {k: tf.convert_to_tensor(v) for k, v in columns.items()}
    out = {name: tf.convert_to_tensor(columns[raw]) for raw, name in layout["inputs"].items()}
    if layout.get("packed"):
        cols = [columns[c] for c in layout["packed"]["columns"]]
        if any(isinstance(v, tf.Tensor) for v in cols):  # also inside a tf.function (e.g. LIME's predictor)
            block = tf.stack([tf.cast(tf.reshape(v, [-1]), tf.float32) for v in cols], axis=1)
        else:
            block = tf.constant(np.stack([np.asarray(v, np.float32).reshape(-1) for v in cols], axis=1))
        out[layout["packed"]["name"]] = block
    return out


def raw_inputs(preprocessor, frame, limit=None, extra=()):
    """``serving_default`` keyword arguments for the rows of ``frame`` (raw columns)."""
    df = frame if limit is None else frame.iloc[:limit]
    layout = serving_layout(preprocessor, {k: tf.TensorSpec([None], tf.string) for k in extra})
    if layout["packed"]:  # wide data: one array for the numeric block, not one per column
        columns = dict(preprocessor.frame_to_inputs(df, numeric=False))
        out = signature_inputs({**layout, "packed": None}, {**columns, **{
            k: df[k].astype(str).to_numpy().astype(object) for k in extra}})
        out[PACKED_NAME] = tf.constant(preprocessor.numeric_block(df))
        return out
    columns = dict(preprocessor.frame_to_inputs(df))
    for k in extra:
        columns[k] = df[k].astype(str).to_numpy().astype(object)
    return signature_inputs(layout, columns)


def write_layout(layout, run_dir: Path) -> Path:
    path = Path(run_dir) / "preprocessing" / "serving_inputs.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(layout, indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def export_saved_model(ctx) -> dict:
    """Export, reload and compare predictions on test rows; record the check in the report."""
    # extra raw string inputs a post-processor needs (e.g. the group column of fairness thresholds)
    extra_inputs = dict(ctx.serving.extra_inputs)
    module = build_serving_module(ctx, extra_inputs)
    signature = {**ctx.data.preprocessor.input_signature(), **extra_inputs}
    path = save_module(module, signature, ctx.run_dir / "saved_model")
    write_layout(module.layout, ctx.run_dir)
    ctx.artifacts["saved_model"] = "saved_model"
    loaded = tf.saved_model.load(str(path))
    sig = loaded.signatures["serving_default"]
    n = min(1000, len(ctx.data.test))
    inputs = raw_inputs(ctx.data.preprocessor, ctx.data.test.frame, n, extra=list(extra_inputs))
    outputs = sig(**inputs)
    served = outputs["probabilities"].numpy()
    direct = ctx.predict_proba(ctx.data.test.x[:n])
    audited = ctx.serving.served_class_id_test  # decisions the report's served metrics come from
    mismatches = None if audited is None else int(np.sum(outputs["class_id"].numpy() != np.asarray(audited)[:n]))
    diff = float(np.max(np.abs(served - direct)))
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    layout = module.layout
    section = ctx.report.setdefault("export", {})
    section["saved_model"] = {"path": "saved_model", "signature": "serving_default",
                              "inputs": {name: layout["dtypes"][raw] for raw, name in layout["inputs"].items()},
                              "renamed_inputs": {raw: name for raw, name in layout["inputs"].items() if raw != name},
                              "packed_numeric": ({"input": PACKED_NAME, "columns": len(layout["packed"]["columns"])}
                                                 if layout["packed"] else None),
                              "layout_file": "preprocessing/serving_inputs.json",
                              "outputs": ["logits", "probabilities", "class_id", "class_name"],
                              "roundtrip_rows": n, "roundtrip_max_abs_diff": diff, "bytes": int(size)}
    if mismatches is not None:
        section["saved_model"]["roundtrip_class_id_mismatches"] = mismatches
    return section["saved_model"]
