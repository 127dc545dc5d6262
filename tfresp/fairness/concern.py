"""The fairness concern: group metrics with CIs in the audit, and one mitigation in training.

Audit (always): for every sensitive attribute and the intersection of the first two, per-group
selection rate, TPR/FPR/FNR/TNR, accuracy, precision and calibration (ECE), the gaps between
groups (difference and ratio), disparate impact, a sweep over decision thresholds, percentile
bootstrap CIs and normalized ``score_hooks``. fairlearn's ``MetricFrame`` is the metric engine; the computation
is :mod:`tfresp.fairness.audit`, shared with :func:`tfresp.audits.fairness`.

Mitigation (``fairness.mitigation``), each a Keras-native piece of the run's Contribution:

========== =============================================== ====================== ===========
mitigation  mechanism                                        contribution           with DP-SGD
========== =============================================== ====================== ===========
reweigh     Kamiran & Calders (2012) sample weights          ``sample_weight``      yes (counts
                                                                                    via Laplace)
mmd         MinDiff Gaussian MMD (Prost et al. 2019)         ``batch_losses``       refused
adversarial gradient-reversal adversary (Zhang et al. 2018)  per-example loss +     yes
                                                             ``wrap_core``
clp         counterfactual logit pairing (Garg et al. 2019)  per-example loss       yes
threshold   group thresholds (Hardt et al. 2016)             serving post-process   yes
========== =============================================== ====================== ===========

Example:
    >>> tfresp.fit({"data": {"source": "adult", "sensitive": ["sex", "race"]},
    ...             "fairness": {"mitigation": "threshold", "constraint": "equalized_odds"}})
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import pandas as pd
import tensorflow as tf
import tf_keras as keras

from tfresp.concerns import Concern, Contribution, register
from tfresp.data.labels_compact import str_labels
from tfresp.errors import ConfigError
from tfresp.fairness import audit as fairness_audit
from tfresp.fairness import metrics as fm
from tfresp.fairness import postprocess
from tfresp.fairness.config import METRIC_NAMES
from tfresp.fairness.state import FairnessState

CONSTRAINT_GAP = {"demographic_parity": "demographic_parity_difference",
                  "equalized_odds": "equalized_odds_difference",
                  "equal_opportunity": "equal_opportunity_difference"}
_SHORT = {"demographic_parity": "dp_diff", "equalized_odds": "eo_diff", "equal_opportunity": "eopp_diff"}


def sensitive_of(ctx) -> List[str]:
    cfg = ctx.config.fairness
    return list(cfg.sensitive if cfg.sensitive is not None else ctx.data.sensitive)


def mitigation_attributes(ctx) -> List[str]:
    cfg = ctx.config.fairness
    return list(cfg.mitigate_on or sensitive_of(ctx)[:1])


def group_array(split, attr: str) -> np.ndarray:
    """Group labels of one attribute on a split (kept-aside sensitive column or a raw frame column)."""
    if attr in split.groups:
        return str_labels(split.groups[attr])
    return str_labels(split.frame[attr])


def positive_index(ctx) -> int:
    cfg, classes = ctx.config.fairness, [str(c) for c in ctx.data.classes]
    if cfg.positive_class is not None:
        return classes.index(cfg.positive_class)
    return 1 if len(classes) == 2 else len(classes) - 1


class FairnessMonitor(keras.callbacks.Callback):
    """Logs the targeted gap on validation data after each epoch as ``fair/<gap>`` (e.g. ``fair/eo_diff``).

    Args:
        x, y: validation inputs and integer labels.
        groups: validation group labels (the mitigation attribute).
        constraint: which gap to log.
        positive: index of the positive class.
        threshold: decision threshold on P(positive).
    """

    def __init__(self, x, y, groups, constraint: str, positive: int, threshold: float):
        super().__init__()
        self.x, self.groups_ = x, str_labels(groups)
        self.y = (np.asarray(y) == positive).astype(np.int64)
        self.constraint, self.positive, self.threshold = constraint, positive, threshold
        self.names = sorted(np.unique(self.groups_).tolist())
        self.gidx = np.searchsorted(self.names, self.groups_)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or len(self.names) < 2:
            return
        from tfresp.run.context import predict_proba

        prob = predict_proba(getattr(self.model, "core", self.model), self.x)[:, self.positive]
        pred = (prob >= self.threshold).astype(np.int64)
        rates = fm.group_rates(self.y, pred, prob, self.gidx, len(self.names))
        logs[f"fair/{_SHORT[self.constraint]}"] = float(fm.gap_stats(rates)[CONSTRAINT_GAP[self.constraint]][0])


@register
class Fairness(Concern):
    """Group fairness metrics (+ CIs) and one training- or post-processing mitigation."""

    config_key = "fairness"
    State = FairnessState
    example = {"fairness": {"sensitive": ["sex"], "mitigation": "adversarial", "bootstrap": 0}}

    # ------------------------------------------------------------------------ validate ----
    def validate(self, ctx) -> None:
        cfg, data = ctx.config.fairness, ctx.data
        problems = []
        if ctx.config.task != "classification":
            problems.append(("fairness", ctx.config.task, "fairness audits need task: classification"))
            raise ConfigError(problems)
        sensitive = sensitive_of(ctx)
        if not sensitive and cfg.mitigation != "clp":
            problems.append(("fairness.sensitive", sensitive,
                             "name at least one sensitive attribute (here or in data.sensitive)"))
        for attr in sensitive:
            if attr not in data.test.groups and attr not in data.test.frame.columns:
                problems.append(("fairness.sensitive", attr, f"a column of the data (available: "
                                 f"{list(map(str, data.test.frame.columns))[:20]})"))
        for attr, group in (cfg.privileged or {}).items():
            if attr not in sensitive:
                problems.append((f"fairness.privileged.{attr}", group, f"an attribute listed in fairness.sensitive "
                                 f"{sensitive}"))
        for attr in cfg.mitigate_on or []:
            if attr not in sensitive:
                problems.append(("fairness.mitigate_on", attr, f"one of fairness.sensitive {sensitive}"))
        if cfg.metrics is not None and not cfg.metrics:
            problems.append(("fairness.metrics", [], f"a non-empty subset of {list(METRIC_NAMES)}"))
        if cfg.positive_class is not None and cfg.positive_class not in [str(c) for c in data.classes]:
            problems.append(("fairness.positive_class", cfg.positive_class, f"one of the classes {data.classes}"))
        m = cfg.mitigation
        if m == "mmd" and ctx.config.privacy is not None:
            problems.append(("fairness.mitigation", m,
                             "a mitigation compatible with DP-SGD: the MMD penalty compares predictions across the "
                             "whole batch, so it cannot be clipped per example and the privacy section refuses it; "
                             "use reweigh, adversarial or threshold (or turn privacy off)"))
        if m in ("mmd", "adversarial", "reweigh", "threshold") and not mitigation_attributes(ctx):
            problems.append(("fairness.mitigate_on", None, f"an attribute to mitigate on for mitigation {m!r}"))
        if m == "clp":
            if data.kind != "text" or not isinstance(data.train.x, dict) or "input_ids" not in data.train.x:
                problems.append(("fairness.mitigation", m, "clp (counterfactual logit pairing swaps identity "
                                 "words) needs text data (data.text); for tabular data use reweigh, mmd, "
                                 "adversarial or threshold"))
        if m == "threshold":
            if data.validation is None:
                problems.append(("fairness.mitigation", m, "a validation split to fit group thresholds on "
                                 "(data.split.validation > 0)"))
            if data.num_classes != 2:
                problems.append(("fairness.mitigation", m, "a binary task (group thresholds act on P(class 1))"))
            if data.kind != "tabular":
                problems.append(("fairness.mitigation", m, "tabular data (the group column must be a serving "
                                 "input next to the raw features)"))
        if problems:
            raise ConfigError(problems)

    # ---------------------------------------------------------------------------- plan ----
    def plan(self, ctx) -> Contribution:
        cfg, data = ctx.config.fairness, ctx.data
        contrib = Contribution()
        info = {"name": cfg.mitigation, "constraint": cfg.constraint}
        ctx.own(self).mitigation = info
        pos = positive_index(ctx)
        attrs = mitigation_attributes(ctx)
        if attrs and data.validation is not None and cfg.mitigation not in ("none", "clp"):
            contrib.callbacks.append(FairnessMonitor(
                data.validation.x, data.validation.y, postprocess.group_keys(
                    {a: group_array(data.validation, a) for a in attrs}, attrs),
                cfg.constraint, pos, cfg.decision_threshold))
        if cfg.mitigation in ("none", "threshold"):
            if cfg.mitigation == "threshold":
                info.update(attributes=attrs, stage="post-processing (fitted on validation predictions after "
                            "training; see fairness.mitigation.thresholds)")
            return contrib
        if cfg.mitigation == "clp":
            return self._plan_clp(ctx, contrib, info)
        keys = postprocess.group_keys({a: group_array(data.train, a) for a in attrs}, attrs)
        names = sorted(np.unique(keys).tolist())
        gid = np.searchsorted(names, keys).astype(np.int32)
        info.update(attributes=attrs, groups=names, weight=cfg.weight)
        if cfg.mitigation == "reweigh":
            from tfresp.fairness import reweigh

            counts = reweigh.group_label_counts(gid, data.train.y, len(names), data.num_classes)
            if ctx.config.privacy is not None:
                from tfresp.privacy.concern import run_budget

                budget = run_budget(ctx)
                budget.spend_laplace("fairness.reweigh_counts", epsilon=float(cfg.reweigh_epsilon), sensitivity=1.0,
                                     covers=["fairness.mitigation.noisy_group_label_counts",
                                             "fairness.mitigation.weights", "training sample weights"])
                # secret noise (never the config seed); only the noisy counts are published or used below
                counts = reweigh.laplace_counts(counts, float(cfg.reweigh_epsilon), budget.secret_seed())
                w, table = reweigh.kamiran_calders_weights(gid, data.train.y, len(names), data.num_classes, counts)
                budget.declare_public("fairness.mitigation.groups",
                                      "the sensitive-attribute values present in the training split are treated "
                                      "as public")
                info["privacy"] = (f"the group x label counts were released with the Laplace mechanism "
                                   f"(epsilon={cfg.reweigh_epsilon}, secret noise); the weights use only the noisy "
                                   "counts, and this spend is composed into privacy.epsilon by the run's budget")
                contrib.notes.append(info["privacy"])
                info["dp_caveat"] = ("under DP-SGD the weights multiply the loss *before* per-example clipping, so "
                                     "for examples whose gradient norm exceeds privacy.l2_norm_clip the weight is "
                                     "undone by the clip; expect a much weaker effect than without DP "
                                     "(benchmarks/fairness_tradeoff.py: dp8-reweigh) - prefer threshold or "
                                     "adversarial under DP")
                contrib.notes.append("fairness.reweigh: " + info["dp_caveat"])
                info["noisy_group_label_counts"] = {
                    g: {str(c): round(float(counts[i, j]), 2) for j, c in enumerate(data.classes)}
                    for i, g in enumerate(names)}
            else:
                w, table = reweigh.kamiran_calders_weights(gid, data.train.y, len(names), data.num_classes)
                info["group_label_counts"] = {g: {str(c): int(counts[i, j]) for j, c in enumerate(data.classes)}
                                              for i, g in enumerate(names)}
            contrib.sample_weight = w
            info["weights"] = {g: {str(c): float(table[i, j]) for j, c in enumerate(data.classes)}
                               for i, g in enumerate(names)}
            return contrib
        ctx.train_extras["fair_group"] = gid
        if cfg.mitigation == "mmd":
            from tfresp.fairness.mmd import make_mmd_loss

            contrib.batch_losses.append(make_mmd_loss(cfg.constraint, len(names), cfg.weight, cfg.mmd_bandwidth, pos))
            info.update(kernel="gaussian", bandwidth=cfg.mmd_bandwidth, reference="Prost et al. 2019 (MinDiff)")
        elif cfg.mitigation == "adversarial":
            from tfresp.fairness import adversarial

            dim = 1 if cfg.constraint == "demographic_parity" else 4
            holder = adversarial.AdversaryHolder(len(names), dim, cfg.adversary_hidden, name=adversarial.HOLDER_NAME)
            contrib.wrap_core = lambda core, _ctx: adversarial.attach(core, holder)
            contrib.per_example_losses.append(adversarial.make_adversarial_loss(holder, cfg.constraint, cfg.weight,
                                                                                pos))
            info.update(adversary_hidden=cfg.adversary_hidden, adversary_inputs="logit margin" if dim == 1 else
                        "logit margin, margin*y, margin*(1-y), y", reference="Zhang, Lemoine & Mitchell 2018")
            ctx.own(self).adversary = holder
            if ctx.config.privacy is not None:
                contrib.notes.append("fairness.adversarial: the adversary's variables are part of the core model, so "
                                     "DP-SGD clips and noises their gradients too; they are used only inside the "
                                     "loss, so the per-example gradient norm must come from the per-example loss "
                                     "(ghost clipping of the forward layers alone would miss them)")
        return contrib

    def _plan_clp(self, ctx, contrib, info):
        from tfresp.fairness import clp

        cfg, pre = ctx.config.fairness, ctx.data.preprocessor
        terms = cfg.identity_terms or clp.DEFAULT_IDENTITY_TERMS
        table, pairs, skipped = clp.swap_table(pre.vocab, terms, getattr(pre, "lowercase", True))
        if not pairs:
            raise ConfigError([("fairness.identity_terms", terms, "at least two terms of one list that are single "
                                "WordPieces of the vocabulary")])
        contrib.per_example_losses.append(clp.make_clp_loss(table, cfg.weight))
        ctx.own(self).clp_table = table
        info.update(swaps=[f"{a}->{b}" for a, b in pairs], skipped_terms=skipped, weight=cfg.weight,
                    reference="Garg et al. 2019")
        return contrib

    # --------------------------------------------------------------------------- audit ----
    def audit(self, ctx) -> Optional[dict]:
        cfg, data = ctx.config.fairness, ctx.data
        pos = positive_index(ctx)
        y, prob, raw = fairness_audit.positive_view(data.test.y, ctx.predictions["test"], pos, cfg.decision_threshold)
        sensitive = sensitive_of(ctx)
        section: Dict[str, object] = fairness_audit.header(str(data.classes[pos]), cfg.decision_threshold,
                                                           cfg.constraint, sensitive)
        section["inputs"] = inputs_report(ctx, sensitive)
        for a in section["inputs"]["sensitive_as_inputs"]:
            section["warnings"].append(f"sensitive attribute {a!r} is a model input (data.features or "
                                       "data.use_sensitive); it is not kept aside")
        for p in section["inputs"].get("proxies") or []:
            section["warnings"].append(f"feature {p['feature']!r} predicts {p['attribute']!r} with AUC "
                                       f"{p['auc']:.2f} (a proxy: removing {p['attribute']!r} from the inputs does "
                                       "not remove its information)")
        state = ctx.own(self)
        info = dict(state.mitigation or {"name": cfg.mitigation})
        decisions, post = raw, state.served_test
        if post is not None:
            decisions = post
        elif cfg.mitigation == "threshold":
            section["warnings"].append(f"threshold post-processing refused and not served: {info['refused']}")
        reports = fairness_audit.group_reports(
            y, decisions, prob, {a: group_array(data.test, a) for a in sensitive}, sensitive,
            intersectional=cfg.intersectional, privileged=cfg.privileged, thresholds=cfg.thresholds,
            metrics=cfg.metrics, min_group_size=cfg.min_group_size, bootstrap=cfg.bootstrap,
            confidence=cfg.confidence, seed=ctx.config.seed)
        section.update(fairness_audit.section_of(reports, sensitive))
        if cfg.mitigation == "clp":
            info.update(self._clp_audit(ctx))
        section["tradeoff"] = self._tradeoff(ctx, y, raw, post, prob, reports)
        if cfg.mitigation not in ("none", "clp"):
            verdict = mitigation_verdict(cfg, info, section["tradeoff"], float(np.mean(decisions)) if len(decisions)
                                         else None)
            info["verdict"] = verdict
            if verdict["status"] != "met":
                section["warnings"].append(f"mitigation {cfg.mitigation}: {verdict['statement']}")
        section["mitigation"] = info
        section["plots"] = self._plots(ctx, reports)
        return section

    # ------------------------------------------------------------------------ post-fit ----
    def post_fit(self, ctx) -> None:
        """``mitigation: threshold``: fit (or reload) the group thresholds on the validation predictions and
        serve them (``ctx.serving``); the audit reads the served test decisions from this concern's state."""
        if ctx.config.fairness.mitigation != "threshold":
            return
        state = ctx.own(self)
        state.mitigation = info = dict(state.mitigation or {"name": "threshold"})
        state.served_test = self._postprocess(ctx, info, positive_index(ctx))

    def _postprocess(self, ctx, info, pos):
        """Fit (or reload) the group rule, serve it unless refused; served test decisions or None."""
        cfg, data = ctx.config.fairness, ctx.data
        attrs = mitigation_attributes(ctx)
        saved = ctx.own(self).saved_thresholds
        yv = (data.validation.y == pos).astype(np.int64)
        pv = ctx.predictions["validation"][:, pos].astype(np.float64)
        keys_v = postprocess.group_keys({a: group_array(data.validation, a) for a in attrs}, attrs)
        if saved is not None and "rules" in saved:  # re-audit of a finished run: use the rule it serves
            fitted = {k: v for k, v in saved.items() if k not in ("attributes", "separator")}
        else:
            fitted = postprocess.fit_group_thresholds(yv, pv, keys_v, cfg.constraint, tolerance=cfg.tolerance,
                                                      default=cfg.decision_threshold,
                                                      min_group_size=cfg.min_group_size,
                                                      allow_trivial=cfg.allow_trivial)
        info.update(method=fitted["method"], rules=fitted["rules"], default_threshold=fitted["default"],
                    defaulted_groups=fitted["defaulted_groups"], trivial_groups=fitted["trivial_groups"],
                    randomized_groups=fitted["randomized_groups"], tolerance=fitted["tolerance"],
                    refused=fitted["refused"], attributes=attrs)
        before_v = fm.headline_gaps(yv, (pv >= cfg.decision_threshold).astype(np.int64), keys_v, cfg.min_group_size)
        expected_v = postprocess.positive_probability(pv, keys_v, fitted)
        gap_name = CONSTRAINT_GAP[cfg.constraint]
        exp_gap = postprocess.expected_gap(yv, expected_v, keys_v, cfg.constraint, cfg.min_group_size)
        validation = {"rows": int(len(yv)), "before": before_v,
                      "expected_gap": None if np.isnan(exp_gap) else exp_gap,
                      "expected_accuracy": float(np.mean(np.where(yv == 1, expected_v, 1 - expected_v)))}
        if fitted["refused"]:
            info["validation"] = {**validation, "feasible": False}
            info["served"] = False
            return None
        hash_inputs = list(data.preprocessor.input_signature()) + list(attrs)
        module = postprocess.GroupThresholds(attrs, fitted, hash_inputs, ctx.config.seed, pos)
        served_v = served_decisions(module, data.preprocessor, data.validation, attrs,
                                     ctx.predictions["validation"])
        validation["after"] = fm.headline_gaps(yv, served_v, keys_v, cfg.min_group_size)
        feasible = bool(not np.isnan(exp_gap) and exp_gap <= cfg.tolerance + 1e-9 and not fitted["defaulted_groups"])
        validation["feasible"] = feasible
        validation["feasible_means"] = (f"the expected {gap_name} of the served rule on validation is <= tolerance "
                                        f"{cfg.tolerance} and no group kept the default threshold")
        info["validation"] = validation
        path = postprocess.save(fitted, attrs, ctx.run_dir / "preprocessing")
        ctx.artifacts["fairness_thresholds"] = "preprocessing/thresholds.json"
        ctx.serving.postprocess = module
        extra = ctx.serving.extra_inputs
        for a in attrs:
            extra[a] = tf.TensorSpec([None], tf.string, name=a)
        post = served_decisions(module, data.preprocessor, data.test, attrs, ctx.predictions["test"])
        ctx.serving.served_class_id_test = np.where(post == 1, pos, 1 - pos)
        ctx.serving.description = ("fairness group thresholds (fairlearn ThresholdOptimizer), applied by the "
                                   "SavedModel; raw model metrics: evaluation.test")
        info.update(served=True, saved_to=str(path.relative_to(ctx.run_dir)),
                    serving=(f"SavedModel serving_default takes the extra string input(s) {attrs} to pick the "
                             "group's rule; groups unknown or defaulted use P(positive) >= default_threshold. "
                             "Randomized rules draw from a seeded hash of the row's raw inputs, so a row always "
                             "gets the same decision"),
                    caution="decisions use the sensitive attribute at serving time (group-specific thresholds are "
                            "disparate treatment in some jurisdictions); training-time mitigations do not need it")
        return post

    def _clp_audit(self, ctx) -> dict:
        from tfresp.fairness import clp

        table = ctx.own(self).clp_table
        if table is None:
            return {}

        def logits(x):
            return np.asarray(ctx.core.predict(x, batch_size=512, verbose=0))

        return {"counterfactual_test": clp.counterfactual_report(logits, ctx.data.test.x, table)}

    def _tradeoff(self, ctx, y, raw, post, prob, reports) -> dict:
        cfg = ctx.config.fairness
        attrs = mitigation_attributes(ctx) or sensitive_of(ctx)[:1]
        gap_name = CONSTRAINT_GAP[cfg.constraint]
        out = {"gap": gap_name, "attribute": fm.INTERSECTION_SEP.join(attrs)}
        if not attrs:
            return out
        keys = postprocess.group_keys({a: group_array(ctx.data.test, a) for a in attrs}, attrs)

        def point(dec):
            return fm.headline_gaps(y, dec, keys, cfg.min_group_size)

        if post is not None:
            out["before"] = {**point(raw), "what": f"same model, single threshold {cfg.decision_threshold}"}
            out["after"] = {**point(post), "what": "same model, group thresholds (served)"}
            before_rep = fm.group_report(y, raw, prob, keys, min_group_size=cfg.min_group_size,
                                         bootstrap=cfg.bootstrap, confidence=cfg.confidence, seed=ctx.config.seed)
            out["before"][f"{gap_name}_ci"] = before_rep.get(f"{gap_name}_ci")
        else:
            out["after"] = {**point(raw), "what": f"this run's model at threshold {cfg.decision_threshold}"}
            out["before"] = None
            out["note"] = ("no unmitigated baseline is trained inside the run (it would double the training cost); "
                           "compare with a mitigation: none run (tfresp compare) or benchmarks/fairness_tradeoff.py")
        after_rep = reports.get(out["attribute"])
        if after_rep is not None:
            out["after"][f"{gap_name}_ci"] = after_rep.get(f"{gap_name}_ci")
        sweep = [{"threshold": r["threshold"], "accuracy": r["accuracy"], gap_name: r.get(gap_name)}
                 for r in fm.threshold_sweep(y, prob, keys, cfg.thresholds or fm.DEFAULT_THRESHOLDS,
                                             cfg.min_group_size)]
        out["accuracy_vs_gap_by_threshold"] = sweep
        return out

    def _plots(self, ctx, reports) -> List[str]:
        from tfresp.fairness import plots

        out = []
        try:
            if plots.group_bars(reports, ctx.run_dir / "plots" / "fairness_groups.png"):
                out.append("plots/fairness_groups.png")
            if plots.threshold_gaps(reports, ctx.config.fairness.decision_threshold,
                                    ctx.run_dir / "plots" / "fairness_thresholds.png"):
                out.append("plots/fairness_thresholds.png")
        except ImportError:  # matplotlib missing: numbers stay in the report
            pass
        return out


def served_decisions(module, preprocessor, split, attrs, proba) -> np.ndarray:
    """Binary decisions (1 = positive) the served post-processing returns for a split's raw rows.

    The raw inputs are built exactly as the SavedModel receives them (``preprocessor.frame_to_inputs`` plus
    the group columns as strings), so the hashed random draws equal the served ones. The raw inputs are built
    ``8192`` rows at a time (row by row the same values; whole-split string tensors were ~0.4 KB a row).
    """
    out = []
    for i in range(0, len(split.frame), 8192):
        rows = split.frame.iloc[i:i + 8192]
        chunk = {k: tf.constant(v) for k, v in preprocessor.frame_to_inputs(rows).items()}
        for a in attrs:
            chunk[a] = tf.constant(rows[a].astype(str).to_numpy().astype(object))
        out.append(module(chunk, tf.constant(proba[i:i + 8192], tf.float32)).numpy())
    cls = np.concatenate(out) if out else np.zeros(0, np.int64)
    return (cls == module.positive_index).astype(np.int64)


def mitigation_verdict(cfg, info, tradeoff, positive_share=None) -> dict:
    """Did the mitigation reach its target (``fairness.tolerance``) on test, and did it make things worse?

    ``positive_share``: share of positive served decisions on test; near 0 or 1 the gaps are trivially small
    and the verdict is ``degenerate`` whatever the gap.
    """
    gap = tradeoff.get("gap")
    before, after = tradeoff.get("before") or {}, tradeoff.get("after") or {}
    b, a = before.get(gap), after.get(gap)
    out = {"target": f"{gap} <= {cfg.tolerance} on test", "before": b, "after": a,
           "positive_share": positive_share}
    if info.get("refused"):
        out.update(status="refused", statement=f"refused, not served ({info['refused']}); the served model is the "
                   "raw model")
        return out
    if positive_share is not None and not 0.03 <= positive_share <= 0.97:
        out.update(status="degenerate", statement=f"the served model gives the positive decision to "
                   f"{100 * positive_share:.1f}% of test rows: a gap of {a} says nothing about fairness")
        return out
    if a is None:
        out.update(status="unknown", statement=f"{gap} is not defined on test (fewer than two groups)")
        return out
    if b is not None:
        acc = 100 * ((after.get("accuracy") or 0) - (before.get("accuracy") or 0))
        out["accuracy_change_points"] = acc
        if a > b + 1e-12:
            out.update(status="worse", statement=f"made {gap} worse on test: {b:.4f} -> {a:.4f} "
                       f"(accuracy {acc:+.2f} points)")
            return out
        if a > cfg.tolerance:
            out.update(status="missed", statement=f"missed its target: {gap} {b:.4f} -> {a:.4f} on test > "
                       f"tolerance {cfg.tolerance} (accuracy {acc:+.2f} points)")
            return out
        if not (info.get("validation") or {}).get("feasible", True):
            out.update(status="missed", statement=f"{gap} {b:.4f} -> {a:.4f} on test, but the fit was not feasible "
                       "on validation (tolerance missed or groups kept the default threshold)")
            return out
        out.update(status="met", statement=f"{gap} {b:.4f} -> {a:.4f} on test (accuracy {acc:+.2f} points)")
        return out
    if a > cfg.tolerance:
        out.update(status="missed", statement=f"missed its target: {gap} = {a:.4f} on test > tolerance "
                   f"{cfg.tolerance} (no unmitigated baseline in this run: compare with a mitigation: none run)")
    else:
        out.update(status="met", statement=f"{gap} = {a:.4f} on test <= tolerance {cfg.tolerance}")
    return out


def inputs_report(ctx, sensitive) -> dict:
    """Sensitive attributes that are model inputs, and features that are strong proxies of them.

    A proxy is a feature whose values alone separate one group from the rest with ROC-AUC >= ``PROXY_AUC``
    on the training split (numeric: the value itself; categorical: the category's group share). Computed
    only without DP: under DP it would be an unaccounted release of the private rows.
    """
    data = ctx.data
    features = [str(c) for c in (data.feature_columns or [])]
    out = {"sensitive_as_inputs": [a for a in sensitive if a in features], "proxy_threshold_auc": PROXY_AUC}
    frame = getattr(data.train, "frame", None)
    if data.kind != "tabular" or frame is None:
        out["proxies"] = None
        out["proxies_note"] = "proxy screening is tabular-only"
        return out
    if ctx.config.privacy is not None:
        out["proxies"] = None
        out["proxies_note"] = ("not computed under differential privacy (a per-feature AUC on the training rows "
                               "would be a release outside the privacy budget)")
        return out
    out["proxies"] = proxy_screen(frame, features, {a: group_array(data.train, a) for a in sensitive},
                                  ctx.config.fairness.min_group_size)
    out["proxies_method"] = ("per feature, one-vs-rest ROC-AUC of each group with at least min_group_size training "
                             "rows (numeric: raw value; categorical: the category's share of that group, in-sample, "
                             "so optimistic for features with many rare categories)")
    return out


PROXY_AUC = 0.8


def proxy_screen(frame, features, groups_by_attr, min_group_size) -> list:
    """``[{feature, attribute, group, auc}]`` with AUC >= ``PROXY_AUC`` (strongest first)."""
    from sklearn.metrics import roc_auc_score

    found = []
    for attr, groups in groups_by_attr.items():
        names, counts = np.unique(groups, return_counts=True)
        targets = [g for g, n in zip(names, counts) if n >= min_group_size and n <= len(groups) - min_group_size]
        for f in features:
            if f == attr or f not in frame.columns:
                continue
            col = frame[f]
            best = None
            for g in targets[:1] if len(targets) == 2 else targets:
                t = (groups == g).astype(int)
                if col.dtype.kind in "biuf":
                    x = col.astype(float).to_numpy()
                else:
                    x = col.astype(str).map(pd.Series(t, index=col.index).groupby(col.astype(str)).mean()).to_numpy()
                auc = roc_auc_score(t, x)
                auc = max(auc, 1 - auc)
                if best is None or auc > best[1]:
                    best = (str(g), float(auc))
            if best and best[1] >= PROXY_AUC:
                found.append({"feature": f, "attribute": attr, "group": best[0], "auc": best[1]})
    return sorted(found, key=lambda r: -r["auc"])


def rerun_audit(run_dir, config, data, core, report) -> dict:
    """The fairness section of a finished run, recomputed from its served model (``tfresp audit --fairness``).

    Predictions come from ``core`` on the re-prepared splits; a threshold mitigation re-uses the
    run's saved ``preprocessing/thresholds.json`` instead of refitting.
    """
    import json
    from pathlib import Path

    from tfresp.run.context import compose
    from tfresp.fairness.config import FairnessConfig

    if config.fairness is None:
        config = config.model_copy(update={"fairness": FairnessConfig()})
    ctx = compose(config, data, run_dir, core=core, predict=True, quiet=True)
    saved = Path(run_dir) / "preprocessing" / "thresholds.json"
    if config.fairness.mitigation == "threshold" and saved.is_file():
        ctx.own(Fairness).saved_thresholds = json.loads(saved.read_text())
    concern = Fairness()
    concern.validate(ctx)
    old = report.get("fairness") or {}
    ctx.own(Fairness).mitigation = dict(old.get("mitigation") or {"name": config.fairness.mitigation})
    concern.post_fit(ctx)
    section = concern.audit(ctx)
    section["audited_by"] = "tfresp audit --fairness"
    return section
