"""The explanations concern: LIME and integrated gradients of the trained model, in the report.

It contributes nothing to training; its :meth:`Explanations.audit` explains ``explain.examples``
test examples (LIME, Ribeiro et al. 2016; integrated gradients, Sundararajan et al. 2017), scores
LIME's stability across seeds, computes a global importance (mean |IG attribution| per raw column
over a test sample), and explains misclassified test examples per sensitive group, linking the
explanations to the fairness audit. Report section: ``explanations``.
"""
from __future__ import annotations

import time
from typing import Dict, List

import numpy as np
import tensorflow as tf

from tfresp.concerns import Concern, register
from tfresp.errors import ConfigError, IncompatibleModelError


CACHE_SIZE = 200_000  # strings whose probabilities are kept across LIME seeds (stability) and examples


def _sensitive(ctx) -> List[str]:
    fair = getattr(ctx.config, "fairness", None)
    attrs = getattr(fair, "sensitive", None) if fair is not None else None
    return list(attrs) if attrs else list(ctx.data.sensitive)


def _pick(n: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(k, n), replace=False)) if n else np.zeros(0, int)


@register
class Explanations(Concern):
    """LIME / IG explanations, stability, global importance and misclassified-by-group analysis."""

    config_key = "explain"
    report_key = "explanations"
    example = {"explain": {"examples": 1, "num_samples": 50, "stability_seeds": 2, "global_sample": 20,
                           "misclassified_per_group": 0}}

    def validate(self, ctx) -> None:
        cfg = self.section(ctx.config)
        if ctx.config.task != "classification":
            raise ConfigError([("explain", "on", f"explanations need task 'classification' "
                                f"(got {ctx.config.task!r}); remove the `explain` section")])
        if cfg.ig_max_steps < cfg.ig_steps:
            raise ConfigError([("explain.ig_max_steps", cfg.ig_max_steps,
                                f"must be >= explain.ig_steps ({cfg.ig_steps})")])

    def audit(self, ctx):
        cfg = self.section(ctx.config)
        kind = getattr(ctx.data, "kind", "tabular")
        t0 = time.perf_counter()
        if kind == "tabular":
            section = _tabular(ctx, cfg)
        elif kind == "text":
            section = _text(ctx, cfg)
        elif kind == "image":
            section = _image(ctx, cfg)
        else:
            return {"skipped": f"no explainer for data kind {kind!r}"}
        section["seconds"] = time.perf_counter() - t0
        return section


# -- tabular ---------------------------------------------------------------------------------------
def _covered_by_preprocessing(budget, *items) -> None:
    for item in items:
        if item is not None:
            budget.declare_derived(item, "post-processing of the DP preprocessing statistics "
                                                 "(numeric means/stds, kept categories)")


def _tabular(ctx, cfg) -> dict:
    from tfresp.explain import ig as igm
    from tfresp.explain import plots
    from tfresp.explain.lime_explain import TabularLime, stability

    data, pre, core = ctx.data, ctx.data.preprocessor, ctx.core
    classes = [str(c) for c in data.classes]
    test = data.test
    plots_dir = ctx.run_dir / "plots"
    section: Dict = {"method": cfg.method, "seed": cfg.seed, "num_samples": cfg.num_samples, "top_k": cfg.top_k,
                     "feature_space": "raw columns", "plots": [], "examples": [], "notes": []}
    pred = np.argmax(ctx.predictions["test"], axis=1) if "test" in ctx.predictions else None
    idx = _pick(len(test), cfg.examples, cfg.seed)

    # integrated gradients over the encoded vector (always used for the global view)
    # Under DP the mean baseline and LIME's training statistics come from the DP preprocessing statistics
    # (post-processing), never from the private rows themselves.
    private = ctx.config.privacy is not None  # also when `tfresp audit` re-runs this on a DP run (no budget there)
    if cfg.ig_baseline == "mean":
        baseline = pre.mean_row() if private else data.train.x.mean(axis=0)
    else:
        baseline = np.zeros(data.train.x.shape[1])
    if private and ctx.budget is not None:
        _covered_by_preprocessing(ctx.budget, "explain.ig_baseline" if cfg.ig_baseline == "mean" else None,
                                  "explain.lime_training_statistics" if cfg.method in ("lime", "both") else None)
    path = igm.GradientPath(lambda x: tf.nn.softmax(core(x, training=False)), data.train.x.shape[1:],
                            cfg.batch_size)

    def ig(rows: np.ndarray, target=None):
        res = igm.integrated_gradients(None, test.x[rows], baseline, target, steps=cfg.ig_steps,
                                       max_steps=cfg.ig_max_steps, tolerance=cfg.ig_tolerance, path=path)
        names, cols = igm.aggregate_columns(res.attributions, pre)
        return res, names, cols

    lime = None
    timings = {}
    if cfg.method in ("lime", "both"):
        t = time.perf_counter()
        train_frame = pre.sample_frame(5000, cfg.seed) if private else data.train.frame
        lime = TabularLime(pre, core, train_frame, class_names=classes, batch_size=cfg.batch_size, seed=cfg.seed)
        timings["lime_setup_seconds"] = time.perf_counter() - t

    def lime_explain(row, seed):
        return lime.explain(test.frame.iloc[[row]], seed=seed, num_samples=cfg.num_samples, top_k=cfg.top_k)

    ig_res = None
    if len(idx) and cfg.method in ("ig", "both"):
        ig_res, names, cols = ig(idx)
    jaccards = []
    t = time.perf_counter()
    for j, row in enumerate(idx):
        item = {"row": int(row), "true": classes[int(test.y[row])],
                "predicted": classes[int(pred[row])] if pred is not None else None}
        bars = None
        if lime is not None:
            exp = lime_explain(int(row), cfg.seed)
            exp.pop("all_weights", None)
            stab = stability(lambda s: exp if s == cfg.seed else lime_explain(int(row), s),
                             range(cfg.seed, cfg.seed + cfg.stability_seeds), cfg.top_k)
            jaccards.append(stab["jaccard_mean"])
            item["lime"] = {**exp, "stability": stab}
            bars = [(f.get("condition", f["feature"]), f["weight"]) for f in exp["features"]]
        if ig_res is not None:
            order = np.argsort(-np.abs(cols[j]))[:cfg.top_k]
            item["ig"] = {
                "method": "integrated_gradients", "target": classes[int(ig_res.targets[j])],
                "features": [{"feature": names[k], "attribution": float(cols[j, k])} for k in order],
                "f_x": float(ig_res.f_x[j]), "f_baseline": float(ig_res.f_baseline[j]),
                "steps": int(ig_res.steps[j]), "completeness_error": float(ig_res.completeness_error[j])}
            if bars is None:
                bars = [(names[k], float(cols[j, k])) for k in order]
        xlabel = (f"LIME weight toward class {item['lime']['class_name']}" if "lime" in item else
                  f"IG attribution to p({item['ig']['target']})")
        p = plots.feature_bars(bars, f"test row {int(row)}: predicted {item['predicted']} (true {item['true']})",
                               plots_dir / f"explain_row_{int(row)}.png", xlabel=xlabel)
        item["plot"] = f"plots/{p.name}"
        section["plots"].append(item["plot"])
        section["examples"].append(item)
    timings["examples_seconds"] = time.perf_counter() - t
    if jaccards:
        section["stability"] = {"metric": f"mean pairwise Jaccard of top-{cfg.top_k} LIME features over "
                                          f"{cfg.stability_seeds} seeds", "jaccard_mean": float(np.mean(jaccards)),
                                "jaccard_min": float(np.min(jaccards)), "examples": len(jaccards)}
    if ig_res is not None:
        section["integrated_gradients"] = {"baseline": cfg.ig_baseline, **ig_res.summary()}

    # global importance over a test sample
    t = time.perf_counter()
    gidx = _pick(len(test), cfg.global_sample, cfg.seed + 1)
    gres, names, gcols = ig(gidx)
    importance = dict(sorted(zip(names, np.abs(gcols).mean(axis=0).tolist()), key=lambda kv: -kv[1]))
    section["global_importance"] = {
        "method": "integrated_gradients", "metric": "mean |attribution| per raw column (one-hot dims summed)",
        "rows": int(len(gidx)), "baseline": cfg.ig_baseline, "features": importance,
        "completeness": gres.summary()}
    p = plots.global_importance(importance, f"global importance (IG, {len(gidx)} test rows)",
                                plots_dir / "explain_global.png")
    section["global_importance"]["plot"] = f"plots/{p.name}"
    section["plots"].append(f"plots/{p.name}")
    timings["global_seconds"] = time.perf_counter() - t
    if cfg.shap:
        from tfresp.explain.shap_explain import tabular_section

        t = time.perf_counter()
        sidx = gidx[:cfg.shap_rows]
        section["shap"] = tabular_section(ctx, cfg, sidx, lambda rows, target: ig(rows, target)[2], plots_dir)
        section["plots"].append(section["shap"]["plot"])
        timings["shap_seconds"] = time.perf_counter() - t

    # misclassified examples per sensitive group
    if pred is not None and test.groups:
        t = time.perf_counter()
        section["misclassified_by_group"] = _misclassified(ctx, cfg, pred, classes, ig, lime_explain if lime else None)
        timings["misclassified_seconds"] = time.perf_counter() - t
    if lime is not None:
        section["predictor"] = {"batch_size": lime.predict.batch_size, "compiled_traces": lime.predict.traces,
                                "calls": lime.predict.calls, "max_rows_per_call": lime.predict.max_rows_per_call}
    section["timings"] = timings
    return section


def _misclassified(ctx, cfg, pred, classes, ig, lime_explain) -> dict:
    test = ctx.data.test
    wrong = pred != test.y
    out = {}
    for attr in _sensitive(ctx):
        if attr not in test.groups:
            continue
        groups = {}
        for g in sorted(np.unique(test.groups[attr])):
            in_group = test.groups[attr] == g
            rows = np.nonzero(in_group & wrong)[0]
            entry = {"rows": int(in_group.sum()), "misclassified": int(len(rows)),
                     "error_rate": float(len(rows) / max(int(in_group.sum()), 1))}
            if len(rows):
                sample = rows[_pick(len(rows), cfg.global_sample, cfg.seed + 2)]
                _, names, cols = ig(sample)
                mean_abs = np.abs(cols).mean(axis=0)
                order = np.argsort(-mean_abs)[:cfg.top_k]
                entry["top_features"] = {names[k]: float(mean_abs[k]) for k in order}
                picked = sample[:cfg.misclassified_per_group]
                if lime_explain is not None:
                    entry["examples"] = []
                    for r in picked:
                        exp = lime_explain(int(r), cfg.seed)
                        entry["examples"].append({"row": int(r), "true": classes[int(test.y[r])],
                                                  "predicted": classes[int(pred[r])],
                                                  "features": exp["features"]})
            groups[str(g)] = entry
        out[attr] = groups
    return out


# -- text ------------------------------------------------------------------------------------------
def _strings_predictor(ctx, batch_size):
    """``strings -> probabilities`` for a text run: the pipeline's own function if it published one
    (``ctx.text_parts.predict_strings``), else the serving composition preprocessor + core."""
    from tfresp.explain.predict import BatchedPredictor

    fn = ctx.text_parts.predict_strings if ctx.text_parts is not None else None
    if fn is not None:
        return fn
    pre, core = ctx.data.preprocessor, ctx.core
    sig = pre.input_signature() if hasattr(pre, "input_signature") else None
    if not sig or len(sig) != 1:
        raise IncompatibleModelError("the text preprocessor does not expose a single string input "
                                     "(input_signature()); publish ctx.text_parts.predict_strings instead")
    name = next(iter(sig))
    return BatchedPredictor(lambda s: tf.nn.softmax(core(pre.transform({name: s}), training=False)),
                            tf.TensorSpec([None], tf.string), batch_size, dedup=True, sort_by_length=True,
                            cache_size=CACHE_SIZE)


def _text(ctx, cfg) -> dict:
    from tfresp.explain import plots
    from tfresp.explain.lime_explain import explain_text, stability

    data = ctx.data
    classes = [str(c) for c in data.classes]
    col = ctx.config.data.text
    texts = data.test.frame[col].astype(str).tolist()
    predict = _strings_predictor(ctx, cfg.batch_size)
    idx = _pick(len(texts), cfg.examples, cfg.seed)
    section: Dict = {"method": cfg.method, "seed": cfg.seed, "num_samples": cfg.num_samples, "top_k": cfg.top_k,
                     "feature_space": "words", "plots": [], "examples": [], "notes": []}
    jaccards = []
    for row in idx:
        item = {"row": int(row), "true": classes[int(data.test.y[row])]}
        run = lambda s: explain_text(texts[row], predict, seed=s, num_samples=cfg.num_samples,  # noqa: E731
                                     top_k=cfg.top_k, class_names=classes)
        exp = run(cfg.seed)
        stab = stability(lambda s: exp if s == cfg.seed else run(s), range(cfg.seed, cfg.seed + cfg.stability_seeds),
                         cfg.top_k)
        jaccards.append(stab["jaccard_mean"])
        item["predicted"] = exp["class_name"]
        item["html"] = exp.pop("html")
        exp.pop("all_weights", None)
        item["lime"] = {**exp, "stability": stab}
        p = plots.feature_bars([(f["feature"], f["weight"]) for f in exp["features"]],
                               f"test text {int(row)}: predicted {item['predicted']} (true {item['true']})",
                               ctx.run_dir / "plots" / f"explain_text_{int(row)}.png",
                               xlabel=f"LIME weight toward class {item['predicted']}")
        item["plot"] = f"plots/{p.name}"
        section["plots"].append(item["plot"])
        section["examples"].append(item)
    if jaccards:
        section["stability"] = {"metric": f"mean pairwise Jaccard of top-{cfg.top_k} LIME words over "
                                          f"{cfg.stability_seeds} seeds", "jaccard_mean": float(np.mean(jaccards)),
                                "jaccard_min": float(np.min(jaccards)), "examples": len(jaccards)}
    if cfg.method in ("ig", "both") and len(idx):
        from tfresp.explain.ig import text_integrated_gradients

        try:
            pre = data.preprocessor
            name = next(iter(pre.input_signature()))
            res = text_integrated_gradients(ctx.core, [texts[r] for r in idx], steps=cfg.ig_steps,
                                            vocab=getattr(pre, "vocab", None),
                                            max_steps=cfg.ig_max_steps, tolerance=cfg.ig_tolerance,
                                            forward=lambda s: ctx.core(pre.transform({name: s}), training=False))
            for item, r in zip(section["examples"], res):
                item["ig"] = r
            steps = np.array([r["steps"] for r in res])
            errs = np.array([r["completeness_error"] for r in res])
            section["integrated_gradients"] = {"space": "token embeddings", "baseline": "zero embeddings",
                                               "tolerance": cfg.ig_tolerance,
                                               "steps_used": {"min": int(steps.min()), "max": int(steps.max()),
                                                              "mean": float(steps.mean())},
                                               "completeness_error": {"max": float(errs.max()),
                                                                      "mean": float(errs.mean())},
                                               "all_converged": bool(all(r["converged"] for r in res))}
        except (IncompatibleModelError, AttributeError, TypeError, ValueError) as exc:
            section["notes"].append(f"integrated gradients skipped for this text model: {exc}")
    return section


# -- images ----------------------------------------------------------------------------------------
def _image(ctx, cfg) -> dict:
    from tfresp.explain import plots
    from tfresp.explain.lime_explain import explain_image, stability
    from tfresp.explain.predict import BatchedPredictor, keras_proba_fn

    data = ctx.data
    classes = [str(c) for c in data.classes]
    x = data.test.x
    predict = BatchedPredictor(keras_proba_fn(ctx.core), tf.TensorSpec([None, *x.shape[1:]], tf.float32),
                               cfg.batch_size)
    idx = _pick(len(x), cfg.examples, cfg.seed)
    section: Dict = {"method": "lime", "seed": cfg.seed, "num_samples": cfg.num_samples, "top_k": cfg.top_k,
                     "feature_space": "8x8 grid superpixels", "plots": [], "examples": []}
    jaccards = []
    for row in idx:
        run = lambda s: explain_image(x[row], predict, seed=s, num_samples=cfg.num_samples,  # noqa: E731
                                      top_k=cfg.top_k, batch_size=cfg.batch_size, class_names=classes)
        exp = run(cfg.seed)
        stab = stability(lambda s: exp if s == cfg.seed else run(s), range(cfg.seed, cfg.seed + cfg.stability_seeds),
                         cfg.top_k)
        jaccards.append(stab["jaccard_mean"])
        heat = exp.pop("heatmap")
        exp.pop("all_weights", None)
        p = plots.image_heatmap(x[row], heat, f"LIME: {exp['class_name']}",
                                ctx.run_dir / "plots" / f"explain_image_{int(row)}.png")
        section["examples"].append({"row": int(row), "true": classes[int(data.test.y[row])],
                                    "predicted": exp["class_name"], "lime": {**exp, "stability": stab},
                                    "plot": f"plots/{p.name}"})
        section["plots"].append(f"plots/{p.name}")
    if jaccards:
        section["stability"] = {"jaccard_mean": float(np.mean(jaccards)), "jaccard_min": float(np.min(jaccards)),
                                "examples": len(jaccards)}
    if cfg.method in ("ig", "both") and len(idx):
        from tfresp.explain.ig import integrated_gradients

        res = integrated_gradients(keras_proba_fn(ctx.core), x[idx], np.zeros(x.shape[1:], np.float32),
                                   steps=cfg.ig_steps, max_steps=cfg.ig_max_steps, tolerance=cfg.ig_tolerance,
                                   batch_size=cfg.batch_size)
        for j, item in enumerate(section["examples"]):
            heat = res.attributions[j].reshape(x.shape[1], x.shape[2], -1).sum(axis=-1)
            p = plots.image_heatmap(x[idx[j]], heat, "integrated gradients",
                                    ctx.run_dir / "plots" / f"explain_image_ig_{int(idx[j])}.png")
            item["ig"] = {"method": "integrated_gradients", "target": classes[int(res.targets[j])],
                          "f_x": float(res.f_x[j]), "f_baseline": float(res.f_baseline[j]),
                          "steps": int(res.steps[j]), "completeness_error": float(res.completeness_error[j]),
                          "plot": f"plots/{p.name}"}
            section["plots"].append(f"plots/{p.name}")
        section["integrated_gradients"] = {"baseline": "black image (zeros)", **res.summary()}
    return section
