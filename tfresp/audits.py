"""Audits as functions over (model, data, groups): the report sections of ``tfresp.fit``, for any Keras model.

Each function takes a trained ``keras.Model`` whose output is logits or probabilities (softmax, or one sigmoid /
logit column for a binary label: told apart as ``tfresp.fit(model=...)`` does, or set ``outputs``), inputs ``x``
(an array or a dict of arrays) and integer labels ``y``, and returns the section the run report holds under the
same name. They run the same code as the concerns inside ``tfresp.fit`` (:mod:`tfresp.fairness.audit`,
:mod:`tfresp.robustness.audit`, :mod:`tfresp.privacy.mia`, :mod:`tfresp.evaluation.metrics`), so a section
computed here equals the run's on the same model and rows. Options and their defaults are those of the config
sections (``FairnessConfig``, ``RobustnessConfig``): a misspelt option is refused the same way.

Example:
    >>> sec = tfresp.audits.fairness(model, x_test, y_test, groups={"sex": sex_test})
    >>> sec["sex"]["demographic_parity_difference"], sec["sex"]["demographic_parity_difference_ci"]
    >>> report = tfresp.audit(model, data={"train": (x_tr, y_tr), "test": (x_te, y_te)}, groups={"sex": s_te})

What the run adds and these do not: mitigation verdicts, proxy screening and plots (fairness), the training-time
cost (robustness), the DP accounting and canaries (privacy), data checks (evaluation).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from tfresp.errors import ConfigError, DataError, IncompatibleModelError

AUDITS = ("performance", "fairness", "robustness", "membership")
#: where each audit's section sits in a report
SECTION = {"performance": "evaluation", "fairness": "fairness", "robustness": "robustness", "membership": "privacy"}


# ------------------------------------------------------------------------------------------- inputs ----
def _rows(x) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _inputs(x, field: str = "x"):
    if hasattr(x, "to_dict") and hasattr(x, "columns"):  # a DataFrame of encoded columns
        x = {str(c): x[c].to_numpy() for c in x.columns}
    if isinstance(x, Mapping):
        out = {str(k): np.asarray(v) for k, v in x.items()}
        if len({len(v) for v in out.values()}) != 1:
            raise DataError(f"`{field}`: the arrays of the dict have different row counts. Received: "
                            f"{ {k: len(v) for k, v in out.items()} }. Remedy: one row per example in every array")
        return out
    return np.asarray(x)


def _labels(y, n: int, field: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"`{field}`: integer class ids, one per row of x ({n}). Received: dtype {y.dtype}, shape "
                        f"{y.shape}. Remedy: pass class indices (e.g. np.argmax of one-hot labels)")
    return y.astype(np.int64)


def _groups(groups, n: int) -> dict:
    """``{attribute: string labels}`` from a DataFrame, a dict of arrays or one array (attribute ``group``)."""
    if groups is None:
        return {}
    if hasattr(groups, "columns"):
        groups = {str(c): groups[c].to_numpy() for c in groups.columns}
    elif not isinstance(groups, Mapping):
        groups = {"group": groups}
    out = {str(a): np.asarray(v).astype(str) for a, v in groups.items()}
    bad = {a: len(v) for a, v in out.items() if len(v) != n}
    if bad:
        raise DataError(f"`groups`: one group label per row of x ({n} rows). Received: {bad}. Remedy: pass the "
                        "group columns of the same rows, in the same order")
    return out


def logits_model(model, x, outputs: str = "auto"):
    """``model`` itself if it outputs logits, else it followed by a weightless probabilities-to-logits layer."""
    import tensorflow as tf
    import tf_keras as keras

    from tfresp.models.user import _with_logits, output_kind

    if not isinstance(model, keras.Model):
        raise ConfigError([("model", type(model).__name__, "a trained keras.Model (tf_keras)")])
    sample = tf.nest.map_structure(lambda a: a[:8], x)
    out = np.asarray(model(sample, training=False))
    if out.ndim != 2:
        raise IncompatibleModelError(f"`model`: {model.name!r} outputs shape {tuple(out.shape[1:])} per example. "
                                     "Remedy: audits need [batch, classes] logits or probabilities")
    declared = {"auto": "auto", "logits": "logits", "probabilities": "probabilities"}.get(outputs)
    if declared is None:
        raise ConfigError([("outputs", outputs, "auto | logits | probabilities")])
    kind = output_kind(model, out, declared)
    return model if kind == "logits" else _with_logits(model, kind)


def _proba(core, x) -> np.ndarray:
    """Class probabilities as a run computes them (``RunContext.predict_proba``: float32 softmax of the logits)."""
    from tfresp.run.context import predict_proba

    return predict_proba(core, x)


def _classes(classes, k: int) -> list:
    classes = [str(c) for c in (classes if classes is not None else range(k))]
    if len(classes) != k:
        raise ConfigError([("classes", classes, f"{k} class names, one per model output column")])
    return classes


# ------------------------------------------------------------------------------------------- audits ----
def performance(model, x, y, *, classes: Optional[Sequence] = None, threshold: float = 0.5,
                outputs: str = "auto") -> dict:
    """The ``evaluation`` section: accuracy, precision, recall, F1, ROC-AUC, log loss, per-class report and
    confusion matrix on ``(x, y)`` (scikit-learn metrics; binary tasks decide at P(class 1) >= ``threshold``),
    with 95% Wilson intervals for accuracy (and precision/recall of a binary task)."""
    from tfresp.evaluation.metrics import classification_metrics
    from tfresp.report.derive import add_metric_cis

    x = _inputs(x)
    y = _labels(y, _rows(x))
    proba = _proba(logits_model(model, x, outputs), x)
    section = {"test": classification_metrics(y, proba, _classes(classes, proba.shape[1]), threshold),
               "split_used": "test"}
    add_metric_cis(section)  # the 95% Wilson intervals the report writer adds
    return section


def fairness(model, x, y, groups, *, positive_class=None, classes: Optional[Sequence] = None,
             ci: Optional[float] = None, seed: int = 0, outputs: str = "auto", **options) -> dict:
    """The ``fairness`` section: per attribute of ``groups`` (and the intersection of the first two) the
    per-group metrics, gaps and disparate impact with bias-corrected bootstrap CIs, a threshold sweep, the worst
    gaps and the normalized score hooks (fairlearn's ``MetricFrame`` computes the point estimates).

    Args:
        groups: a DataFrame, a dict ``{attribute: values}`` or one array of group labels, one per row of ``x``.
        positive_class: the class whose selection is audited (a class name of ``classes``; default class 1 for a
            binary task, the last class otherwise, one-vs-rest).
        ci: the two-sided CI level (``confidence``; default 0.95); ``bootstrap=0`` turns CIs off.
        options: fields of :class:`~tfresp.fairness.config.FairnessConfig` (``decision_threshold``, ``constraint``,
            ``bootstrap``, ``min_group_size``, ``metrics``, ``privileged``, ``intersectional``, ``thresholds``).
    """
    from tfresp.fairness import audit as fa
    from tfresp.fairness.config import FairnessConfig

    if ci is not None:
        options["confidence"] = ci
    cfg = _config(FairnessConfig, options, "fairness")
    x = _inputs(x)
    n = _rows(x)
    y = _labels(y, n)
    groups = _groups(groups, n)
    if not groups:
        raise ConfigError([("groups", None, "at least one attribute: a DataFrame, a dict of arrays or one array")])
    proba = _proba(logits_model(model, x, outputs), x)
    names = _classes(classes, proba.shape[1])
    if positive_class is None:
        pos = 1 if len(names) == 2 else len(names) - 1
    elif str(positive_class) in names:
        pos = names.index(str(positive_class))
    else:
        raise ConfigError([("positive_class", positive_class, f"one of the classes {names}")])
    attrs = list(groups)
    yb, prob, decisions = fa.positive_view(y, proba, pos, cfg.decision_threshold)
    section = fa.header(names[pos], cfg.decision_threshold, cfg.constraint, attrs)
    reports = fa.group_reports(yb, decisions, prob, groups, attrs, intersectional=cfg.intersectional,
                               privileged=cfg.privileged, thresholds=cfg.thresholds, metrics=cfg.metrics,
                               min_group_size=cfg.min_group_size, bootstrap=cfg.bootstrap,
                               confidence=cfg.confidence, seed=seed)
    section.update(fa.section_of(reports, attrs))
    return section


def robustness(model, x, y, *, eps: Sequence[float] = (0.05, 0.1), norm: str = "linf", clip=None, mask=None,
               units: str = "model input units", seed: int = 0, outputs: str = "auto", **options) -> dict:
    """The ``robustness`` section: clean accuracy and, for each radius in ``eps``, the accuracy under PGD
    (``eval_steps`` steps × ``restarts`` random restarts), FGSM and random noise (``"pgd@0.1"`` etc.), with the
    gradient-masking checks and the sensitivity figures.

    Args:
        x: one continuous input array ``[n, ...]`` (the first ``eval_examples`` rows are attacked).
        clip: ``(low, high)`` valid input range (scalars or per-feature arrays), or None for unbounded.
        mask: 1 for attackable coordinates (broadcastable to one example), or None for all.
        options: fields of :class:`~tfresp.robustness.config.RobustnessConfig` (``eval_steps``, ``restarts``,
            ``noise_samples``, ``eval_examples``, ``large_epsilon``, ``sensitivity``, ``sensitivity_examples``).
    """
    from tfresp.robustness.audit import attack_section
    from tfresp.robustness.config import RobustnessConfig
    from tfresp.robustness.training import AttackSpace

    cfg = _config(RobustnessConfig, {"eval_epsilons": list(eps), "norm": norm, **options}, "robustness")
    x = _inputs(x)
    if isinstance(x, dict):
        raise DataError("`x`: the attacks move one continuous input array; received a dict of arrays. Remedy: "
                        "audit a model on one float input (for token ids, attack the embeddings with "
                        "tfresp.robustness.attacks.embedding_pgd)")
    y = _labels(y, len(x))
    n = min(cfg.eval_examples, len(y))
    x, y = np.asarray(x[:n], np.float32), y[:n]
    core = logits_model(model, x, outputs)
    lo, hi = (None, None) if clip is None else clip
    space = AttackSpace(None if mask is None else np.asarray(mask, np.float32)[None],
                        None if lo is None else np.asarray(lo, np.float32),
                        None if hi is None else np.asarray(hi, np.float32), units)

    def model_fn(inp):
        return core(inp, training=False)

    return attack_section(model_fn, x, y, cfg, space, seed=seed, core=core)


def membership(model, train, holdout, *, delta: Optional[float] = None, epsilon: Optional[float] = None,
               groups=None, max_examples: int = 5000, seed: int = 0, outputs: str = "auto") -> dict:
    """The membership-inference audit (``privacy.audit``): loss threshold, cross-validated logistic regression and
    offline LiRA-style attacks telling ``train = (x, y)`` rows (members) from ``holdout = (x, y)`` rows, on a
    balanced sample of up to ``max_examples`` each: ROC-AUC, advantage, TPR at 1% FPR, empirical ε lower bound.

    Args:
        delta: δ of the ε lower bound (default: the 'auto' rule, ≤ 1/(10·n) for n training rows).
        epsilon: a claimed ε to check the lower bound against.
        groups: ``(train_groups, holdout_groups)``, each as for :func:`fairness`, for per-group attack results.

    The result is computed from the training rows: it is not covered by a DP guarantee the model may have (inside
    ``tfresp.fit`` the privacy budget declares it as not covered).
    """
    from tfresp.privacy.accounting import default_delta
    from tfresp.privacy.mia import audit_arrays

    (xt, yt), (xh, yh) = train, holdout
    xt, xh = _inputs(xt, "train"), _inputs(xh, "holdout")
    yt, yh = _labels(yt, _rows(xt), "train"), _labels(yh, _rows(xh), "holdout")
    tg, hg = (None, None) if groups is None else groups
    core = logits_model(model, xt, outputs)
    return audit_arrays(core, (xt, yt), (xh, yh), float(delta or default_delta(len(yt))), epsilon, max_examples,
                        seed=seed, train_groups=_groups(tg, len(yt)), holdout_groups=_groups(hg, len(yh)))


def _config(cls, options: dict, section: str):
    import pydantic

    try:
        return cls(**options)
    except pydantic.ValidationError as exc:
        raise ConfigError([(f"{section}.{'.'.join(map(str, e['loc']))}", e.get("input"), e["msg"])
                           for e in exc.errors()]) from None


# -------------------------------------------------------------------------------------- all at once ----
def audit_model(model, data, groups=None, audits: Optional[Sequence[str]] = None, options=None) -> dict:
    """Report-like dict of the named audits (default: all that ``data`` allows) on ``model``.

    Args:
        data: ``(x, y)`` held-out rows, or ``{"test": (x, y), "train": (x, y)}`` (``train`` enables membership).
        groups: group labels of the test rows (enables fairness).
        audits: names from :data:`AUDITS`.
        options: ``{audit_name: {keyword: value}}`` passed to that audit function.
    """
    if not isinstance(data, Mapping):
        data = {"test": data}
    audits = [audits] if isinstance(audits, str) else audits
    stray = sorted(set(options or {}) - set(AUDITS))
    if stray:
        raise ConfigError([("options", stray, f"keys among the audits {list(AUDITS)}")])
    unknown = [a for a in (audits or []) if a not in AUDITS]
    if unknown or not isinstance(data.get("test"), (tuple, list)) or set(data) - {"test", "train"}:
        raise ConfigError([("audits" if unknown else "data", unknown or sorted(data),
                            f"audits among {list(AUDITS)}" if unknown else
                            "(x, y) test rows or {'test': (x, y), 'train': (x, y)}")])
    if audits is None:
        audits = [a for a in AUDITS if (a != "fairness" or groups is not None) and (a != "membership" or
                                                                                      "train" in data)]
    x, y = data["test"]
    report = {"audited_by": "tfresp.audit(model, ...)", "audits": list(audits)}
    for name in audits:
        kw = dict((options or {}).get(name) or {})
        if name == "performance":
            report["evaluation"] = performance(model, x, y, **kw)
        elif name == "fairness":
            if groups is None:
                raise ConfigError([("groups", None, "group labels of the test rows for the fairness audit")])
            report["fairness"] = fairness(model, x, y, groups, **kw)
        elif name == "robustness":
            report["robustness"] = robustness(model, x, y, **kw)
        else:
            if "train" not in data:
                raise ConfigError([("data.train", None, "(x, y) training rows (members) for the membership audit")])
            sec = membership(model, data["train"], (x, y), **kw)
            report["privacy"] = {"epsilon": None, "statement": "No differential privacy claimed: only the empirical "
                                 "membership-inference audit below is reported.", "audit": sec}
    return report


def validate(report: dict) -> list:
    """Schema problems of the report sections present in ``report`` (the report schema's own pieces)."""
    import jsonschema

    from tfresp.report.schema import load_schema
    from tfresp.report.writer import _jsonable

    schema = load_schema()
    problems = []
    for key, sub in schema["properties"].items():
        if key in report:
            validator = jsonschema.Draft202012Validator({**sub, "$defs": schema["$defs"]})
            problems += [f"{key}.{'.'.join(map(str, e.absolute_path))}: {e.message[:300]}"
                         for e in validator.iter_errors(_jsonable(report[key]))]
    return problems
