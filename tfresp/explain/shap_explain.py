"""SHAP values for tabular runs over raw columns, with the ``shap`` package's KernelExplainer.

Why KernelExplainer: it is model-agnostic (any ``keras.Model`` behind tfresp's preprocessing) and its weighted
regression enforces local accuracy, so Σ_j φ_j = f(x) − E_background[f] holds to floating-point error; SHAP's
Deep/Gradient explainers rely on TF1 graph internals or give only approximate additivity with tf_keras 2.21.

Features are the raw columns (a categorical column is one player, not its one-hot dims): rows are coded as a float
matrix (numbers as is, categories as integer codes) and decoded back into a DataFrame inside the prediction
function, which runs the run's fitted preprocessing and the model. The background is drawn from a held-out split
(validation, else test), never from training rows, so it is no privacy release under DP. Seeded: the coalition
sampling uses NumPy's global generator, which is set to ``seed`` for the call and restored afterwards.
"""
from __future__ import annotations

import time
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from tfresp.data.sources import as_category_strings


class RawColumnCoder:
    """Raw-column DataFrame <-> float matrix (categories as integer codes)."""

    def __init__(self, spec: List[dict], frames: List[pd.DataFrame]):
        self.columns = [c["name"] for c in spec]
        self.kinds = {c["name"]: c["kind"] for c in spec}
        self.categories: Dict[str, List[str]] = {}
        for name in self.columns:
            if self.kinds[name] != "numeric":
                seen = pd.concat([as_category_strings(f[name]) for f in frames]).unique().tolist()
                self.categories[name] = sorted(seen)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(frame), len(self.columns)), np.float64)
        for j, name in enumerate(self.columns):
            if self.kinds[name] == "numeric":
                out[:, j] = pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float64)
            else:
                index = {v: i for i, v in enumerate(self.categories[name])}
                out[:, j] = as_category_strings(frame[name]).map(index).to_numpy(np.float64)
        return out

    def decode(self, z: np.ndarray) -> pd.DataFrame:
        cols = {}
        for j, name in enumerate(self.columns):
            if self.kinds[name] == "numeric":
                cols[name] = z[:, j].astype(np.float64)
            else:
                cats = np.asarray(self.categories[name], dtype=object)
                cols[name] = cats[np.clip(np.rint(z[:, j]).astype(int), 0, len(cats) - 1)]
        return pd.DataFrame(cols)


def make_predict(preprocessor, core, coder: RawColumnCoder, target: int, batch_size: int = 4096):
    """``f(Z) -> p(target)`` for coded rows: decode, run the fitted preprocessing, the model and a softmax."""
    def f(z: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(z), batch_size):
            frame = coder.decode(z[start:start + batch_size])
            x = preprocessor.transform_frame(frame)
            out.append(tf.nn.softmax(core(x, training=False)).numpy()[:, target])
        return np.concatenate(out) if out else np.zeros((0,))
    return f


def explain_rows(preprocessor, core, rows: pd.DataFrame, background: pd.DataFrame, *, target: int, seed: int = 0,
                 nsamples="auto") -> dict:
    """SHAP values (one per raw column) for each row in ``rows`` toward class ``target``.

    Returns:
        ``{columns, values [n, M], expected_value, f_x [n], additivity_max_abs_error, background_rows, nsamples}``.
    """
    import shap

    coder = RawColumnCoder(preprocessor.spec, [rows, background])
    f = make_predict(preprocessor, core, coder, target)
    bg = coder.encode(background)
    x = coder.encode(rows)
    state = np.random.get_state()
    t0 = time.perf_counter()
    try:
        np.random.seed(seed)
        explainer = shap.KernelExplainer(f, bg, link="identity")
        values = np.asarray(explainer.shap_values(x, nsamples=nsamples, silent=True), np.float64)
    finally:
        np.random.set_state(state)
    fx = f(x)
    expected = float(np.asarray(explainer.expected_value).reshape(-1)[0])
    err = np.abs(values.sum(axis=1) - (fx - expected))
    return {"columns": coder.columns, "values": values, "expected_value": expected, "f_x": fx,
            "additivity_max_abs_error": float(err.max()) if len(err) else 0.0, "background_rows": int(len(bg)),
            "nsamples": nsamples, "seconds": time.perf_counter() - t0}


def spearman(a: np.ndarray, b: np.ndarray) -> Optional[float]:
    from scipy import stats

    if len(a) < 3 or np.allclose(a, a[0]) or np.allclose(b, b[0]):
        return None
    return float(stats.spearmanr(a, b).statistic)


def tabular_section(ctx, cfg, rows_idx: np.ndarray, ig_columns_fn, plots_dir) -> dict:
    """The report's ``explanations.shap`` for a tabular run: per-row values, additivity, IG cross-check, a global
    summary (mean |φ| per column) and its plot.

    ``ig_columns_fn(rows, target)`` returns integrated-gradients attributions per raw column toward the same class
    (``None`` to skip the cross-check)."""
    from tfresp.explain import plots

    data = ctx.data
    held = data.validation if data.validation is not None else data.test
    rng = np.random.default_rng(cfg.seed)
    bidx = rng.choice(len(held), size=min(cfg.shap_background, len(held)), replace=False)
    background = held.frame.iloc[np.sort(bidx)]
    proba = ctx.predictions.get("test")
    target = 1 if len(data.classes) == 2 else int(np.bincount(np.argmax(proba, axis=1)).argmax())
    rows = data.test.frame.iloc[rows_idx]
    res = explain_rows(data.preprocessor, ctx.core, rows, background, target=target, seed=cfg.seed,
                       nsamples=cfg.shap_nsamples)
    values = res["values"]
    importance = dict(sorted(zip(res["columns"], np.abs(values).mean(axis=0).tolist()), key=lambda kv: -kv[1]))
    sec = {"engine": f"shap {__import__('shap').__version__} KernelExplainer over raw columns",
           "target": str(data.classes[target]), "rows": [int(i) for i in rows_idx],
           "background": f"{len(background)} rows of the held-out "
                         f"{'validation' if data.validation is not None else 'test'} split",
           "expected_value": res["expected_value"], "nsamples": res["nsamples"], "seed": cfg.seed,
           "additivity": {"check": "sum of SHAP values == f(x) - E_background[f(x)]",
                          "max_abs_error": res["additivity_max_abs_error"],
                          "holds": bool(res["additivity_max_abs_error"] <= 1e-4)},
           "examples": [{"row": int(r), "f_x": float(res["f_x"][k]),
                         "values": {c: float(v) for c, v in zip(res["columns"], values[k])}}
                        for k, r in enumerate(rows_idx)],
           "global_importance": importance, "seconds": res["seconds"]}
    ig_columns = None if ig_columns_fn is None else ig_columns_fn(rows_idx, np.full(len(rows_idx), target))
    if ig_columns is not None and ig_columns.shape == values.shape:
        per_row = [spearman(values[k], ig_columns[k]) for k in range(len(values))]
        per_row = [v for v in per_row if v is not None]
        sec["ig_cross_check"] = {
            "metric": "Spearman rank correlation of per-column attributions toward the same class (SHAP vs "
                      "integrated gradients) on the same rows; the two use different baselines (background distribution vs IG baseline row), "
                      "so agreement in ranking, not equality, is expected",
            "per_row_mean": float(np.mean(per_row)) if per_row else None,
            "global": spearman(np.abs(values).mean(axis=0), np.abs(ig_columns).mean(axis=0))}
    p = plots.global_importance(importance, f"SHAP global importance (mean |φ|, {len(rows_idx)} test rows)",
                                plots_dir / "explain_shap_global.png")
    sec["plot"] = f"plots/{p.name}"
    return sec
