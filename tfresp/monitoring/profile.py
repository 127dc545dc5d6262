"""The reference profile a run is monitored against, written at fit time to ``RUN/monitor/reference.json``.

What it holds, per raw input column, sensitive attribute, label and served prediction: coarse histograms (at most
``MAX_BINS`` quantile bins for numbers; categories seen fewer than ``MIN_CELL`` times pooled into ``<other>``), so
no single person's value is published. Which rows it describes:

* the **validation split** when there is one, else the **test split** — rows held out from training, scored by the
  exported SavedModel (the model as served). Under DP these rows are outside DP-SGD's guarantee (it covers training
  rows only); the profile touches no training row, and the privacy coverage list says so.
* or, at monitor time, a public reference file the user declares (``tfresp monitor --reference FILE``).

Under DP the model's category vocabulary holds only the values whose noisy count passed the threshold; every
other value is encoded like an unknown one (all zeros): the model saw those rows as one **folded** bucket. For
such a column (``source: dp`` in the preprocessing spec) the reference counts the held-out rows per kept value
plus the ``<folded by DP>`` bucket, and names the out-of-vocabulary values seen at least ``MIN_CELL`` times in
the held-out split (``folded.values``); the rest are counted (``folded.unnamed_rows``). At monitor time values in
the vocabulary or named as folded are never "unseen"; an unseen-category alarm needs more unnamed values than the
reference predicts (:mod:`tfresp.monitoring.drift`).

``model_vocabulary`` is the vocabulary the model was trained with: fitted on the training rows (exact, without
DP), a DP release (post-processing of the preprocessing histogram) or declared; ``vocabulary_source`` says which.
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
FOLDED = "<folded by DP>"
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


def folded_counts(values: pd.Series, keep: List[str], vocab: List[str]) -> Dict[str, int]:
    """Counts per kept value; vocabulary values not kept go to ``<other>``; values outside the model's vocabulary
    (folded by DP into the all-zero encoding) go to ``<folded by DP>``."""
    counts = as_category_strings(values).value_counts()
    inside = counts.index.isin(vocab)
    out = {k: int(counts.get(k, 0)) for k in keep}
    out[OTHER] = int(counts[inside & ~counts.index.isin(keep)].sum())
    out[FOLDED] = int(counts[~inside].sum())
    return out


def describe_folded(values: pd.Series, vocab: List[str]) -> dict:
    """Reference profile of a DP-vocabulary column: the distribution the model saw (kept values + the folded
    bucket), and the folded values named when held by at least MIN_CELL reference rows."""
    counts = as_category_strings(values).value_counts()
    keep = [str(k) for k, n in counts.items() if n >= MIN_CELL and k in set(vocab)]
    outside = counts[~counts.index.isin(vocab)]
    named = {str(k): int(n) for k, n in outside.items() if n >= MIN_CELL}
    return {"kind": "categorical", "counts": folded_counts(values, keep, vocab),
            "folded": {"values": sorted(named), "named_rows": int(sum(named.values())),
                       "unnamed_rows": int(outside.sum()) - int(sum(named.values()))}}


def describe_columns(frame: pd.DataFrame, columns: List[str], kinds: Dict[str, str],
                     folded_vocab: Optional[Dict[str, List[str]]] = None) -> Dict[str, dict]:
    prof = {}
    for col in columns:
        if folded_vocab and col in folded_vocab and kinds[col] != "numeric":
            prof[col] = describe_folded(frame[col], folded_vocab[col])
        elif kinds[col] == "numeric":
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
                    source: str, vocab: Dict[str, List[str]], folded: Optional[List[str]] = None,
                    vocabulary_source: Optional[str] = None) -> dict:
    """The profile dict (also used for a user-declared reference file at monitor time).

    ``folded``: the columns whose vocabulary is a DP release (values outside it form the folded bucket)."""
    folded_vocab = {c: vocab[c] for c in (folded or []) if c in vocab}
    ref = {
        "schema_version": PROFILE_VERSION,
        "source": source,
        "rows": int(len(frame)),
        "features": describe_columns(frame, features, kinds, folded_vocab),
        "sensitive": {a: {"kind": "categorical", "counts": category_counts(frame[a])} for a in sensitive
                      if a in frame.columns},
        "prediction": prediction_profile(proba, class_id, classes),
        "classes": [str(c) for c in classes],
        "model_vocabulary": vocab,
        "vocabulary_source": vocabulary_source or "the run's preprocessing (preprocessing/tabular.json)",
        "min_cell": MIN_CELL,
        "max_bins": MAX_BINS,
    }
    if label and label in frame.columns:
        ref["label"] = {"column": label, "counts": {str(k): int(v) for k, v in
                                                    frame[label].astype(str).value_counts().items()}}
    return ref


def spec_columns(run_dir: Optional[Path], columns=None) -> list:
    """The tabular preprocessing spec's column list (``columns``, or the run's ``preprocessing/tabular.json``)."""
    if columns is None and run_dir is not None and (Path(run_dir) / "preprocessing" / "tabular.json").is_file():
        spec = json.loads((Path(run_dir) / "preprocessing" / "tabular.json").read_text())
        columns = spec.get("columns", spec) if isinstance(spec, dict) else spec
    return [c for c in (columns or []) if isinstance(c, dict) and "name" in c]


def dp_vocab_columns(columns) -> List[str]:
    """Categorical columns whose vocabulary is a DP release (values outside it were folded in training)."""
    return [c["name"] for c in columns if c.get("kind") == "categorical" and c.get("source") == "dp"]


def vocabulary_provenance(columns) -> str:
    """Where ``model_vocabulary`` comes from, per source kind of the spec's categorical columns."""
    by = {}
    for c in columns:
        if c.get("kind") == "categorical":
            by.setdefault(c.get("source") or "fitted", []).append(c["name"])
    what = {"dp": "DP release of the training rows (values passing the noisy-count threshold)",
            "declared": "declared in data.categories", "fitted": "exact values of the training rows"}
    return "; ".join(f"{what.get(k, k)}: {', '.join(v)}" for k, v in sorted(by.items())) or "no categorical column"


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
    columns = spec_columns(None, getattr(data.preprocessor, "spec", None))
    kinds, vocab = spec_kinds_and_vocab(None, features, frame, columns)
    label = ctx.config.data.label
    vocab_source = vocabulary_provenance(columns)
    ref = build_reference(frame, features=features, kinds=kinds, sensitive=list(data.sensitive), label=label,
                          classes=list(data.classes), proba=proba, class_id=class_id,
                          source=f"{name} split ({len(frame)} rows held out from training), scored by the exported "
                                 "SavedModel; model_vocabulary: the model's training vocabulary", vocab=vocab,
                          folded=dp_vocab_columns(columns), vocabulary_source=vocab_source)
    out = ctx.run_dir / "monitor"
    out.mkdir(parents=True, exist_ok=True)
    (out / "reference.json").write_text(json.dumps(ref, indent=1))
    ctx.artifacts["monitor_reference"] = "monitor/reference.json"
    _record_folding(ctx, ref, name)
    histograms = (f"histograms and served predictions of the held-out {name} split, not of training rows (coarse "
                  f"bins, categories seen fewer than {MIN_CELL} times pooled); the DP guarantee covers training rows "
                  f"only, so the {name} rows are not protected by it")
    exact = [c["name"] for c in columns if c.get("kind") == "categorical" and not c.get("source")]
    budget = getattr(ctx, "budget", None)
    if budget is not None:
        budget.declare_public("monitor/reference.json", histograms)
        vocab_item = "monitor/reference.json model_vocabulary"
        if exact:
            budget.declare_not_covered(vocab_item, f"exact category values of the training rows ({', '.join(exact)})")
        elif vocab:
            budget.declare_derived(vocab_item, f"the preprocessing vocabulary ({vocab_source}); post-processing")
    elif isinstance(getattr(ctx, "privacy_claim", None), dict) and exact and ctx.privacy_claim.get("statement"):
        # federated DP (no example-level budget; its claim becomes the report's privacy section): the statement
        # names the training vocabulary the reference holds
        ctx.privacy_claim["statement"] += (
            f" monitor/reference.json holds {histograms}, and the model's category vocabulary, which is the exact "
            f"set of values of the pooled training rows ({', '.join(exact)}): not covered.")
    return ref


def _record_folding(ctx, ref: dict, split_name: str) -> None:
    """``data.preprocessing.folded``: per DP column, the share of held-out rows whose value the DP vocabulary
    folded away (and the named values' shares) — what the fit report warns about."""
    pre = ((getattr(ctx.data, "extra", None) or {}).get("summary") or {}).get("preprocessing")
    if not isinstance(pre, dict):
        return
    rows = max(int(ref["rows"]), 1)
    folded = {}
    for col, prof in ref["features"].items():
        fold = prof.get("folded")
        if fold is None or not prof["counts"].get(FOLDED):
            continue
        counts = as_category_strings(ctx.data.validation.frame[col] if split_name == "validation" else
                                     ctx.data.test.frame[col]).value_counts()
        folded[col] = {"share_of_rows": prof["counts"][FOLDED] / rows,
                       "values": {v: int(counts.get(v, 0)) / rows for v in fold["values"]},
                       "unnamed_rows": fold["unnamed_rows"]}
    pre["folded"] = {"rows_from": f"{split_name} split ({rows} held-out rows)", "columns": folded}
