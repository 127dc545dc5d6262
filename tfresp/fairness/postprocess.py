"""Group-specific (randomized) thresholds fitted on validation predictions: post-processing.

Hardt, Price & Srebro, "Equality of opportunity in supervised learning" (NeurIPS 2016), as
implemented by fairlearn's :class:`~fairlearn.postprocessing.ThresholdOptimizer` (``prefit`` on the
model's validation scores, objective accuracy). For equalized odds every group is moved to one
common (FPR, TPR) point; a group whose ROC curve does not pass through it gets a *randomized*
rule: with probability ``p0`` apply threshold ``t0``, else ``t1``, and with probability
``p_ignore`` ignore the score and say "positive" with probability ``constant``. Deterministic
thresholds cannot do this in general, which is why the earlier deterministic search fell back to
"approve everyone".

Serving: :class:`GroupThresholds` applies the same rule in TF ops inside the SavedModel. The
random draw is a keyed hash of the row's raw serving inputs (FarmHash fingerprint of the joined
values, salted with the run's seed): the same applicant always gets the same decision, the
audit reproduces exactly what is served, and across rows the draws are uniform.

Refusals (the post-processing is then **not served**; the raw model is): a group whose decisions
do not separate the labels (all-positive, all-negative, a constant coin, or TPR - FPR below
``MIN_INFORMATIVENESS``, e.g. a threshold on a score that carries no information) unless
``fairness.allow_trivial: true``, and a fit fairlearn rejects. ``feasible`` is true only when
the validation gap of the served rule is within ``fairness.tolerance`` and no group was left
on the default threshold (too small or single-label in validation).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from sklearn.base import BaseEstimator

from tfresp.data.labels_compact import joined_labels, str_labels
from tfresp.fairness.metrics import INTERSECTION_SEP

FAIRLEARN_CONSTRAINT = {"equalized_odds": "equalized_odds", "demographic_parity": "demographic_parity",
                        "equal_opportunity": "true_positive_rate_parity"}
_HASH_BUCKETS = 2 ** 31 - 1


class _Score(BaseEstimator):
    """A prefit 'estimator' whose score is the first column of X (the model's validation P(positive))."""

    def fit(self, X, y):  # pragma: no cover - never called (prefit)
        return self

    def __sklearn_is_fitted__(self):
        return True

    def predict(self, X):
        return np.asarray(X, np.float64)[:, 0]


def _bound(t: float) -> float:
    # scores are probabilities in [0, 1]: +-inf thresholds become 2 / -1 (JSON has no infinity)
    return float(min(2.0, max(-1.0, t)))


def _rule_of(bunch) -> dict:
    return {"p_ignore": float(bunch.get("p_ignore", 0.0)), "constant": float(bunch.get("prediction_constant", 0.0)),
            "p0": float(bunch.p0), "op0": bunch.operation0.operator, "t0": _bound(bunch.operation0.threshold),
            "p1": float(bunch.p1), "op1": bunch.operation1.operator, "t1": _bound(bunch.operation1.threshold)}


def positive_probability(score: np.ndarray, keys: np.ndarray, fitted: dict) -> np.ndarray:
    """P(positive decision) of each row under the fitted rules (unfitted groups: ``score >= default``)."""
    score = np.asarray(score, np.float64)
    keys = str_labels(keys)
    out = (score >= fitted["default"]).astype(np.float64)
    for g, r in fitted["rules"].items():
        m = keys == g
        s = score[m]
        a = (s > r["t0"]) if r["op0"] == ">" else (s < r["t0"])
        b = (s > r["t1"]) if r["op1"] == ">" else (s < r["t1"])
        out[m] = r["p_ignore"] * r["constant"] + (1 - r["p_ignore"]) * (r["p0"] * a + r["p1"] * b)
    return out


#: a group's rule is trivial when its expected decisions separate the labels by less than this
#: (Youden's J = TPR - FPR): all-positive, all-negative, a constant coin, or a threshold on noise.
MIN_INFORMATIVENESS = 0.05


def _trivial(y: np.ndarray, prob: np.ndarray) -> Optional[str]:
    if len(prob) == 0:
        return None
    if np.ptp(prob) <= 1e-9:
        c = float(prob[0])
        return "all-positive" if c >= 1 - 1e-9 else "all-negative" if c <= 1e-9 else f"a constant coin P={c:.3f}"
    if (y == 1).any() and (y == 0).any():
        j = float(prob[y == 1].mean() - prob[y == 0].mean())
        if j < MIN_INFORMATIVENESS:
            return (f"uninformative: TPR - FPR = {j:.3f} < {MIN_INFORMATIVENESS} (selection rate "
                    f"{prob.mean():.3f} whatever the label)")
    return None


def fit_group_thresholds(y: np.ndarray, score: np.ndarray, keys: np.ndarray, constraint: str, *,
                         tolerance: float = 0.02, default: float = 0.5, min_group_size: int = 30,
                         allow_trivial: bool = False) -> dict:
    """Fit fairlearn's ThresholdOptimizer on validation scores; JSON-able rules plus a verdict.

    Args:
        y: binary validation labels (1 = positive class).
        score: P(positive) of the model on the validation rows.
        keys: group key per row (the mitigation attribute(s), joined).
        constraint: ``equalized_odds | demographic_parity | equal_opportunity``.
        tolerance: the gap the served rule must stay within on validation to be ``feasible``.
        default: threshold of groups that cannot be fitted (fewer than ``min_group_size`` rows or one label).
        allow_trivial: serve rules that ignore the score for some group (otherwise refused).

    Returns:
        ``{"rules": {group: rule}, "default", "defaulted_groups": {group: reason}, "trivial_groups":
        {group: what}, "randomized_groups", "refused": reason | None, "constraint", "tolerance"}``.

    Example:
        >>> fitted = fit_group_thresholds(y_val, p_val, sex_val, "equalized_odds")
        >>> positive_probability(p_test, sex_test, fitted)
    """
    from fairlearn.postprocessing import ThresholdOptimizer

    y = np.asarray(y).astype(np.int64)
    score = np.asarray(score, np.float64)
    keys = str_labels(keys)
    names, counts = np.unique(keys, return_counts=True)
    defaulted = {}
    for g, n in zip(names, counts):
        labels = np.unique(y[keys == g])
        if n < min_group_size:
            defaulted[str(g)] = f"{int(n)} validation rows < fairness.min_group_size {min_group_size}"
        elif len(labels) < 2:
            defaulted[str(g)] = f"only label {int(labels[0])} in validation"
    fit_mask = ~np.isin(keys, list(defaulted))
    out = {"method": "fairlearn.postprocessing.ThresholdOptimizer (Hardt et al. 2016), prefit on validation "
                     "scores, objective accuracy_score",
           "constraint": constraint, "tolerance": float(tolerance), "default": float(default), "rules": {},
           "defaulted_groups": defaulted, "trivial_groups": {}, "randomized_groups": [], "refused": None}
    if len(np.unique(keys[fit_mask])) < 2:
        out["refused"] = "fewer than two groups large enough to fit (see defaulted_groups)"
        return out
    opt = ThresholdOptimizer(estimator=_Score(), constraints=FAIRLEARN_CONSTRAINT[constraint], prefit=True,
                             predict_method="predict", objective="accuracy_score")
    try:
        opt.fit(score[fit_mask, None], y[fit_mask], sensitive_features=keys[fit_mask])
    except (ValueError, ZeroDivisionError) as exc:
        out["refused"] = f"fairlearn ThresholdOptimizer failed: {exc}"
        return out
    for g, bunch in opt.interpolated_thresholder_.interpolation_dict.items():
        out["rules"][str(g)] = _rule_of(bunch)
    prob = positive_probability(score, keys, out)
    for g in out["rules"]:
        r, m = out["rules"][g], keys == g
        what = _trivial(y[m], prob[m])
        if what:
            out["trivial_groups"][g] = what
        if r["p_ignore"] > 1e-9 or min(r["p0"], r["p1"]) > 1e-9:
            out["randomized_groups"].append(g)
    if out["trivial_groups"] and not allow_trivial:
        out["refused"] = ("the fitted rule ignores the model for group(s) " + ", ".join(
            f"{g} ({w})" for g, w in out["trivial_groups"].items()) + "; set fairness.allow_trivial: true to serve it")
    return out


def expected_gap(y: np.ndarray, prob: np.ndarray, keys: np.ndarray, constraint: str, min_group_size: int) -> float:
    """The constraint's gap of *expected* decisions (P(positive) per row) over groups >= ``min_group_size``."""
    y = np.asarray(y).astype(np.int64)
    keys = str_labels(keys)
    names, counts = np.unique(keys, return_counts=True)
    rates = []
    for g in names[counts >= min_group_size]:
        m = keys == g
        sel = prob[m].mean()
        tpr = prob[m & (y == 1)].mean() if (m & (y == 1)).any() else np.nan
        fpr = prob[m & (y == 0)].mean() if (m & (y == 0)).any() else np.nan
        rates.append((sel, tpr, fpr))
    if len(rates) < 2:
        return float("nan")
    r = np.asarray(rates)
    spread = np.nanmax(r, axis=0) - np.nanmin(r, axis=0)
    if constraint == "demographic_parity":
        return float(spread[0])
    if constraint == "equal_opportunity":
        return float(spread[1])
    return float(max(spread[1], spread[2]))


def group_keys(groups_by_attr: Dict[str, np.ndarray], attributes: Sequence[str]) -> np.ndarray:
    return joined_labels([groups_by_attr[a] for a in attributes], INTERSECTION_SEP)


def save(fitted: dict, attributes: List[str], directory: Path) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "thresholds.json"
    path.write_text(json.dumps({"attributes": list(attributes), "separator": INTERSECTION_SEP, **fitted},
                               indent=1))
    return path


def row_uniform(inputs: Dict[str, tf.Tensor], names: Sequence[str], seed: int) -> tf.Tensor:
    """A uniform number in (0, 1) per row: keyed FarmHash of the row's raw inputs ``names`` (sorted)."""
    parts = []
    for k in sorted(names):
        v = tf.reshape(inputs[k], [-1])
        parts.append(v if v.dtype == tf.string else tf.strings.as_string(v))
    joined = tf.strings.reduce_join(tf.stack(parts, axis=1), axis=1, separator="\x1f")
    salted = tf.strings.join([tf.constant(f"tfresp-seed-{int(seed)}\x1f"), joined])
    h = tf.strings.to_hash_bucket_fast(salted, _HASH_BUCKETS)
    return (tf.cast(h, tf.float64) + 0.5) / float(_HASH_BUCKETS)


class GroupThresholds(tf.Module):
    """Serving post-processing: the fitted (randomized) group rule in TF ops.

    ``__call__(raw_inputs, proba)`` reads the group column(s) ``attributes`` from the raw serving
    inputs, computes P(positive decision) of the group's rule and draws the decision with
    :func:`row_uniform` over the ``hash_inputs`` columns. Unknown or defaulted groups use
    ``P(positive) >= default``.

    Example:
        >>> post = GroupThresholds(["sex"], fitted, ["age", "sex"], seed=0)
        >>> post({"sex": tf.constant(["Female"]), "age": tf.constant([39.0])}, tf.constant([[0.5, 0.5]]))
    """

    def __init__(self, attributes: Sequence[str], fitted: dict, hash_inputs: Sequence[str], seed: int = 0,
                 positive_index: int = 1):
        super().__init__(name="group_thresholds")
        self.attributes = list(attributes)
        self.hash_inputs = sorted(set(hash_inputs) | set(attributes))
        self.seed = int(seed)
        self.positive_index = int(positive_index)
        rules = fitted["rules"]
        names = list(rules) or ["<none>"]
        keys = tf.constant(names, tf.string)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, tf.range(len(names), dtype=tf.int64)), default_value=-1)

        def col(field, fill):
            return tf.constant([float(rules[g][field]) for g in rules] or [fill], tf.float64)

        def sign(field):
            return tf.constant([1.0 if rules[g][field] == ">" else -1.0 for g in rules] or [1.0], tf.float64)

        self.p_ignore, self.constant = col("p_ignore", 0.0), col("constant", 0.0)
        self.p0, self.t0, self.s0 = col("p0", 1.0), col("t0", 0.5), sign("op0")
        self.p1, self.t1, self.s1 = col("p1", 0.0), col("t1", 0.5), sign("op1")
        self.default = tf.constant(float(fitted["default"]), tf.float64)

    def positive_probability(self, inputs, proba):
        parts = [tf.strings.strip(tf.strings.as_string(inputs[a]) if inputs[a].dtype != tf.string else inputs[a])
                 for a in self.attributes]
        key = parts[0] if len(parts) == 1 else tf.strings.join(parts, separator=INTERSECTION_SEP)
        gid = self.table.lookup(tf.reshape(key, [-1]))
        known = gid >= 0
        i = tf.maximum(gid, 0)
        s = tf.cast(proba[:, self.positive_index], tf.float64)

        def op(t, sign):
            return tf.cast(sign * (s - tf.gather(t, i)) > 0, tf.float64)

        pi = tf.gather(self.p_ignore, i)
        rule = pi * tf.gather(self.constant, i) + (1 - pi) * (
            tf.gather(self.p0, i) * op(self.t0, tf.gather(self.s0, i))
            + tf.gather(self.p1, i) * op(self.t1, tf.gather(self.s1, i)))
        return tf.where(known, rule, tf.cast(s >= self.default, tf.float64))

    def __call__(self, inputs, proba):
        p = self.positive_probability(inputs, proba)
        positive = row_uniform(inputs, self.hash_inputs, self.seed) < p
        return tf.where(positive, tf.constant(self.positive_index, tf.int64),
                        tf.constant(1 - self.positive_index, tf.int64))
