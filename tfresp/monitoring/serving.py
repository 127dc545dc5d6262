"""Scoring raw rows with a run's exported SavedModel (the model as served)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pandas as pd
import tensorflow as tf

from tfresp.errors import ConfigError, DataError
from tfresp.data.sources import as_category_strings


def load_signature(run_dir: Path):
    """``serving_default`` of ``RUN/saved_model`` and its ``{input name: TensorSpec}``."""
    path = Path(run_dir) / "saved_model"
    if not path.is_dir():
        raise ConfigError([("run", str(run_dir), "has no saved_model/ to monitor; re-run with "
                                                 "export.saved_model: true")])
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]
    signature._tfresp_owner = loaded  # keep the variables alive as long as the signature
    _, kwargs = signature.structured_input_signature
    return signature, dict(kwargs)


def column_mapping(run_dir: Path) -> Dict[str, str]:
    """``{signature input name: raw column name}`` when the export renamed columns (else empty).

    A packed numeric input (wide data, see :mod:`tfresp.export.saved_model`) maps to the list of its columns.
    """
    layout_file = Path(run_dir) / "preprocessing" / "serving_inputs.json"
    if layout_file.is_file():
        layout = json.loads(layout_file.read_text(encoding="utf-8"))
        mapping = {name: raw for raw, name in layout["inputs"].items()}
        if layout.get("packed"):
            mapping[layout["packed"]["name"]] = list(layout["packed"]["columns"])
        return mapping
    return {}


def frame_inputs(frame: pd.DataFrame, specs: Dict[str, tf.TensorSpec], mapping: Dict[str, str],
                 where: str) -> Dict[str, tf.Tensor]:
    """Raw columns of ``frame`` as the signature's inputs; every missing column is named at once."""
    def raws(k):
        v = mapping.get(k, k)
        return v if isinstance(v, list) else [v]

    missing = [c for k in specs for c in raws(k) if c not in frame.columns]
    if missing:
        raise DataError(f"`{where}`: columns the served model needs are missing. Received: missing {missing}. "
                        "Remedy: send the same raw columns the run was trained on")
    out = {}
    for name, spec in specs.items():
        if isinstance(mapping.get(name), list):  # packed numeric columns: one [rows, n] input
            block = frame[mapping[name]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
            bad = {c: int(n) for c, n in zip(mapping[name], np.isnan(block).sum(axis=0)) if n}
            if bad:
                raise DataError(f"`{where}`: missing or non-numeric values. Received: {bad}. "
                                "Remedy: clean or impute them before monitoring")
            out[name] = tf.constant(block.astype(np.float32))
            continue
        s = frame[mapping.get(name, name)]
        if spec.dtype == tf.string:
            out[name] = tf.constant(as_category_strings(s).to_numpy().astype(object))
        else:
            values = pd.to_numeric(s, errors="coerce").to_numpy(np.float64)
            if np.isnan(values).any():
                raise DataError(f"`{where}`: column {mapping.get(name, name)!r} has {int(np.isnan(values).sum())} "
                                "missing or non-numeric values. Remedy: clean or impute them before monitoring")
            out[name] = tf.constant(values.astype(spec.dtype.as_numpy_dtype))
    return out


def score(signature, specs, mapping, frame: pd.DataFrame, where: str, batch: int = 4096) -> Tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """``(probabilities [n, C], served class ids [n])`` of the served model on raw rows."""
    probs, ids = [], []
    for start in range(0, len(frame), batch):
        out = signature(**frame_inputs(frame.iloc[start:start + batch], specs, mapping, where))
        probs.append(out["probabilities"].numpy())
        ids.append(out["class_id"].numpy())
    if not probs:
        return np.zeros((0, 0)), np.zeros((0,), np.int64)
    return np.concatenate(probs), np.concatenate(ids).astype(np.int64)
