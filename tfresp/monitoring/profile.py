"""The reference profile a run is monitored against, written at fit time to ``RUN/monitor/reference.json``.

What it holds, per raw input column, sensitive attribute, label and served prediction: coarse histograms (at most
``MAX_BINS`` quantile bins for numbers; categories seen fewer than ``MIN_CELL`` times pooled into ``<other>``), so
no single person's value is published. Which rows it describes:

* the **validation split** when there is one, else the **test split** — rows held out from training, scored by the
  exported SavedModel (the model as served). Under DP these rows are outside DP-SGD's guarantee (it covers training
  rows only); the profile touches no training row, and the privacy coverage list says so.
* or, at monitor time, a public reference file the user declares (``tfresp monitor --reference FILE``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from tfresp.data.sources import as_category_strings

PROFILE_VERSION = "1.0"
MAX_BINS = 10
MIN_CELL = 10
OTHER = "<other>"
PROB_EDGES = [0.1 * i for i in range(1, 10)]  # fixed bins of the positive-class probability


def numeric_edges(values: np.ndarray) -> List[float]:
    """Interior quantile edges (deciles), deduplicated; numbers rounded to 4 significant digits."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return []
    qs = np.quantile(values, np.linspace(0, 1, MAX_BINS + 1)[1:-1])
    return sorted({float(f"{q:.4g}") for q in qs})


def bin_counts(values: np.ndarray, edges: List[float]) -> List[int]:
    """Counts of ``values`` in the bins ``(-inf, e0], (e0, e1], ..., (e_last, inf)``."""
    idx = np.searchsorted(np.asarray(edges, np.float64), values, side="left")
    return np.bincount(idx, minlength=len(edges) + 1).astype(int).tolist()


def category_counts(values: pd.Series, keep: Optional[List[str]] = None) -> Dict[str, int]:
    """Counts per category; values not in ``keep`` (or, without ``keep``, rarer than MIN_CELL) go to ``<other>``."""
    s = as_category_strings(values)
    counts = s.value_counts()
    if keep is None:
        keep = [str(k) for k, n in counts.items() if n >= MIN_CELL]
    out = {k: int(counts.get(k, 0)) for k in keep}
    out[OTHER] = int(counts[~counts.index.isin(keep)].sum())
    return out


def describe_columns(frame: pd.DataFrame, columns: List[str], kinds: Dict[str, str]) -> Dict[str, dict]:
    prof = {}
    for col in columns:
        if kinds[col] == "numeric":
            values = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
            edges = numeric_edges(values)
            prof[col] = {"kind": "numeric", "edges": edges, "counts": bin_counts(values, edges)}
        else:
            prof[col] = {"kind": "categorical", "counts": category_counts(frame[col])}
    return prof


def prediction_profile(proba: np.ndarray, class_id: np.ndarray, classes: List[str]) -> dict:
    prof = {"class_counts": {str(c): int(n) for c, n in
                             zip(classes, np.bincount(class_id, minlength=len(classes)))}}
    if proba.shape[1] == 2:
        prof["positive_probability"] = {"edges": PROB_EDGES, "counts": bin_counts(proba[:, 1], PROB_EDGES)}
    return prof


def build_reference(frame: pd.DataFrame, *, features: List[str], kinds: Dict[str, str], sensitive: List[str],
                    label: Optional[str], classes: List[str], proba: np.ndarray, class_id: np.ndarray,
                    source: str, vocab: Dict[str, List[str]]) -> dict:
    """The profile dict (also used for a user-declared reference file at monitor time)."""
    ref = {
        "schema_version": PROFILE_VERSION,
        "source": source,
        "rows": int(len(frame)),
        "features": describe_columns(frame, features, kinds),
        "sensitive": {a: {"kind": "categorical", "counts": category_counts(frame[a])} for a in sensitive
                      if a in frame.columns},
        "prediction": prediction_profile(proba, class_id, classes),
        "classes": [str(c) for c in classes],
        "model_vocabulary": vocab,
        "min_cell": MIN_CELL,
        "max_bins": MAX_BINS,
    }
    if label and label in frame.columns:
        ref["label"] = {"column": label, "counts": {str(k): int(v) for k, v in
                                                    frame[label].astype(str).value_counts().items()}}
    return ref


def spec_kinds_and_vocab(run_dir: Optional[Path], features: List[str], frame: pd.DataFrame, columns=None):
    """Column kinds and the model's training vocabulary, from the tabular preprocessing spec (``columns``, or the
    run's saved ``preprocessing/tabular.json``)."""
    kinds, vocab = {}, {}
    if columns is None and run_dir is not None and (Path(run_dir) / "preprocessing" / "tabular.json").is_file():
        spec = json.loads((Path(run_dir) / "preprocessing" / "tabular.json").read_text())
        columns = spec.get("columns", spec) if isinstance(spec, dict) else spec
    if isinstance(columns, list):
        for c in columns:
            if isinstance(c, dict) and "name" in c:
                kinds[c["name"]] = c.get("kind", "categorical")
                if c.get("vocab") is not None:
                    vocab[c["name"]] = [str(v) for v in c["vocab"]]
    for f in features:
        kinds.setdefault(f, "numeric" if pd.api.types.is_numeric_dtype(frame[f]) else "categorical")
    return kinds, vocab


def write_reference(ctx) -> Optional[dict]:
    """Write ``RUN/monitor/reference.json`` for a tabular classification run with an exported SavedModel."""
    from tfresp.monitoring.serving import column_mapping, load_signature, score

    data = ctx.data
    if getattr(data, "kind", "tabular") != "tabular" or not (ctx.run_dir / "saved_model").is_dir():
        return None
    split, name = (data.validation, "validation") if data.validation is not None else (data.test, "test")
    frame = split.frame
    features = list(data.feature_columns)
    signature, specs = load_signature(ctx.run_dir)
    proba, class_id = score(signature, specs, column_mapping(ctx.run_dir), frame, "monitor.reference")
    kinds, vocab = spec_kinds_and_vocab(None, features, frame, getattr(data.preprocessor, "spec", None))
    label = ctx.config.data.label
    ref = build_reference(frame, features=features, kinds=kinds, sensitive=list(data.sensitive), label=label,
                          classes=list(data.classes), proba=proba, class_id=class_id,
                          source=f"{name} split ({len(frame)} rows held out from training), scored by the exported "
                                 "SavedModel", vocab=vocab)
    out = ctx.run_dir / "monitor"
    out.mkdir(parents=True, exist_ok=True)
    (out / "reference.json").write_text(json.dumps(ref, indent=1))
    ctx.artifacts["monitor_reference"] = "monitor/reference.json"
    if getattr(ctx, "budget", None) is not None:
        ctx.budget.declare_public(
            "monitor/reference.json",
            f"computed from the held-out {name} split, not from training rows (coarse histograms, categories seen "
            f"fewer than {MIN_CELL} times pooled); the DP guarantee covers training rows only, so the {name} rows "
            "are not protected by it")
    return ref
