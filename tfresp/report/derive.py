"""Numbers the report derives from other sections: metric CIs, the scorecard, warnings and gates.

Everything here is a pure function of report.json, so ``tfresp report RUN`` recomputes it without the model.
"""
from __future__ import annotations

import math
import re
from typing import Optional

from tfresp.evaluation.degenerate import findings
from tfresp.evaluation.served import served_metrics
from tfresp.report import scorecard as _scorecard
from tfresp.report.gates import evaluate

Z95 = 1.959963984540054
_ROBUST_KEY = re.compile(r"^[A-Za-z0-9_\-]+@[0-9.eE+\-]+$")


def wilson_interval(successes: float, n: int, z: float = Z95) -> Optional[list]:
    """Wilson score interval of a binomial proportion (Wilson 1927); None when n == 0.

    Example:
        >>> wilson_interval(80, 100)  # doctest: +ELLIPSIS
        [0.71..., 0.86...]
    """
    if not n or n < 0 or not 0 <= successes <= n:  # not a proportion: no interval (the schema flags it)
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]


def add_metric_cis(evaluation: Optional[dict]) -> None:
    """Add ``<metric>_ci`` (95 % Wilson) for accuracy, and for precision/recall of binary tasks, when absent.

    Accuracy is a proportion over ``rows``; precision over predicted positives and recall over actual positives,
    both read from the confusion matrix, so the intervals use the right denominators.
    """
    if not isinstance(evaluation, dict):
        return
    for split in ("test", "validation", "served", "test_postprocessed"):
        ev = evaluation.get(split)
        if not isinstance(ev, dict) or not ev.get("rows"):
            continue
        n = int(ev["rows"])
        if isinstance(ev.get("accuracy"), (int, float)):
            ev.setdefault("accuracy_ci", wilson_interval(ev["accuracy"] * n, n))
        cm = ev.get("confusion_matrix")
        if isinstance(cm, list) and len(cm) == 2 and all(len(r) == 2 for r in cm):
            tp, fp, fn = cm[1][1], cm[0][1], cm[1][0]
            if isinstance(ev.get("precision"), (int, float)) and tp + fp:
                ev.setdefault("precision_ci", wilson_interval(tp, tp + fp))
            if isinstance(ev.get("recall"), (int, float)) and tp + fn:
                ev.setdefault("recall_ci", wilson_interval(tp, tp + fn))


def _cfg(report: dict) -> dict:
    return (report.get("run") or {}).get("config") or {}


class _Facts:
    """The sections every rule reads, looked up once."""

    def __init__(self, report: dict):
        self.report = report
        self.cfg = _cfg(report)
        self.run = report.get("run") or {}
        self.data = report.get("data") or {}
        self.ev = served_metrics(report)
        self.priv = report.get("privacy")
        self.fair = report.get("fairness")
        self.rob = report.get("robustness")
        self.comp = report.get("compression")


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _ci_width(ci) -> Optional[float]:
    return ci[1] - ci[0] if isinstance(ci, list) and len(ci) == 2 and None not in ci else None


# Each rule yields ``(level, code, message)``; RULES runs them in order (what makes the other numbers
# untrustworthy first: it is shown at the top of the report).

def _degenerate(f: _Facts):
    for d in findings(f.report):
        yield "warning", f"degenerate_{d['code']}", d["message"]


def _positive_class(f: _Facts):
    positive = (f.report.get("evaluation") or {}).get("positive_class")
    if isinstance(positive, dict) and positive.get("ambiguous"):
        yield "warning", "ambiguous_positive_class", (
            f"The positive class '{positive.get('positive_class')}' was chosen as the {positive.get('chosen_by')}; "
            "recall, selection rates and fairness gaps count it. Set data.positive_class.")


def _intended_use(f: _Facts):
    if not f.run.get("intended_use"):
        yield "warning", "no_intended_use", ("The intended use is not stated (report.intended_use); a model card "
                                             "without it cannot be reviewed for fitness of purpose.")
    if not f.run.get("out_of_scope"):
        yield "info", "no_out_of_scope", "Out-of-scope uses are not stated (report.out_of_scope)."


def _small_groups(f: _Facts):
    min_group = ((f.cfg.get("fairness") or {}).get("min_group_size")) or 30
    test_split = ((f.data.get("splits") or {}).get("test")) or {}
    for attr, groups in (test_split.get("group_sizes") or {}).items():
        small = {g: n for g, n in groups.items() if n < min_group}
        if small:
            shown = ", ".join(f"{g} (n={n})" for g, n in sorted(small.items(), key=lambda kv: kv[1]))
            yield "warning", "small_groups", (f"Sensitive attribute '{attr}': test groups smaller than {min_group}: "
                                              f"{shown}. Their metrics are unreliable and may be suppressed.")


def _deidentification(f: _Facts):
    deid = (f.data.get("source") or {}).get("deidentification") or f.data.get("deidentification")
    if f.data.get("kind") == "text" and not deid:
        yield "warning", "no_deidentification", ("Free text was used without de-identification (data.deidentify): "
                                                 "e-mails, handles, URLs or phone numbers may be memorized by the "
                                                 "model.")


def _label_imbalance(f: _Facts):
    balance = (((f.data.get("splits") or {}).get("train")) or {}).get("label_balance") or {}
    if balance and min(balance.values()) < 0.1:
        c, v = min(balance.items(), key=lambda kv: kv[1])
        yield "info", "label_imbalance", (f"Class '{c}' is {100 * v:.1f}% of the training labels; accuracy alone "
                                          "overstates quality, see balanced accuracy and per-class metrics.")

def _dp_preprocessing(f: _Facts):
    """DP preprocessing that folded categories (values below the noisy-count threshold are encoded like unknown
    ones) or dropped a column: by name, with the share of held-out rows affected (never of training rows)."""
    pre = f.data.get("preprocessing") or {}
    if not isinstance(pre, dict):
        return
    dropped = [str(c) for c in pre.get("dropped_columns") or []]
    if dropped:
        yield "warning", "dp_dropped_columns", (
            "DP preprocessing dropped column(s) " + ", ".join(dropped) + ": no value passed the noisy-count "
            "threshold, so the model ignores them for 100% of rows. Declare them in data.categories / "
            "data.numeric_ranges, raise privacy.preprocessing_epsilon or use more rows.")
    folded = pre.get("folded") or {}
    for col, fc in sorted((folded.get("columns") or {}).items()):
        if col in dropped or not isinstance(fc, dict):
            continue
        named = sorted((fc.get("values") or {}).items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{v} {100 * share:.1f}%" for v, share in named[:8])
        rest = fc.get("unnamed_rows") or 0
        share = float(fc.get("share_of_rows") or 0)
        detail = f" ({shown}" + (f"; {rest} rows of rarer values" if rest else "") + ")" if shown else ""
        yield "warning" if share >= 0.01 else "info", "dp_folded_categories", (
            f"DP preprocessing folded categories of '{col}' into one 'other' bucket (encoded like an unknown value): "
            f"{100 * share:.1f}% of the {folded.get('rows_from', 'held-out rows')}{detail}. The model cannot tell "
            "these values apart; declare the column's values in data.categories if they matter.")


def _wide_cis(f: _Facts):
    acc_ci = f.ev.get("accuracy_ci")
    if (_ci_width(acc_ci) or 0) > 0.1:
        yield "warning", "wide_ci", (f"Test accuracy 95% CI is wide ({acc_ci[0]:.3f} to {acc_ci[1]:.3f}): the test "
                                     f"set ({f.ev.get('rows')} rows) is too small for precise claims.")
    for attr, sec in (f.fair.items() if isinstance(f.fair, dict) else ()):
        for m in ("demographic_parity_difference", "equalized_odds_difference") if isinstance(sec, dict) else ():
            ci = sec.get(f"{m}_ci")
            if (_ci_width(ci) or 0) > 0.1:
                yield "warning", "wide_ci", (f"Fairness '{attr}' {m.replace('_', ' ')} has a wide 95% CI "
                                             f"({ci[0]:.3f} to {ci[1]:.3f}); the gap is not precisely estimated.")


def _privacy(f: _Facts):
    if not f.priv:
        yield "warning", "no_privacy", ("No differential privacy: the model may memorize and leak individual "
                                        "training records (no privacy guarantee is claimed).")
        return
    eps = f.priv.get("epsilon")
    if _num(eps) and eps > 10:
        yield "warning", "large_epsilon", f"Privacy budget epsilon = {eps:.2f} > 10 gives a weak formal guarantee."
    audit = f.priv.get("audit")
    mia = audit.get("mia_auc") if isinstance(audit, dict) else None
    if _num(mia) and mia > 0.6:
        yield "warning", "mia", f"Membership-inference AUC {mia:.3f} is well above chance (0.5)."


def _fairness(f: _Facts):
    if f.data.get("sensitive") and not f.fair:
        yield "warning", "no_fairness_audit", ("The data has sensitive attributes (" + ", ".join(
            map(str, f.data["sensitive"])) + ") but no fairness audit ran (enable `fairness:`).")
        return
    for attr, sec in (f.fair.items() if isinstance(f.fair, dict) else ()):
        eod = sec.get("equalized_odds_difference") if isinstance(sec, dict) else None
        if _num(eod) and eod > 0.1:
            yield "warning", "fairness_gap", f"Equalized-odds difference for '{attr}' is {eod:.3f} (> 0.1)."


def _robustness(f: _Facts):
    if not isinstance(f.rob, dict):
        yield "info", "no_robustness", "Adversarial robustness was not evaluated."
        return
    for key, sec in f.rob.items():
        acc = sec.get("accuracy") if _ROBUST_KEY.match(str(key)) and isinstance(sec, dict) else None
        if _num(acc) and acc < 0.1:
            yield "warning", "not_robust", (f"Robust accuracy under {key} is {acc:.3f}: the model is essentially "
                                            "not robust at that perturbation size.")


def _compression(f: _Facts):
    base = f.ev.get("accuracy")
    for variant, sec in (f.comp.items() if isinstance(f.comp, dict) and _num(base) else ()):
        acc = sec.get("accuracy") if isinstance(sec, dict) else None
        if _num(acc) and base - acc > 0.02:
            yield "warning", "compression_drop", (f"Compressed variant '{variant}' loses {100 * (base - acc):.1f} "
                                                  "accuracy points.")


def _export(f: _Facts):
    sm = ((f.report.get("export") or {}).get("saved_model")) or {}
    diff = sm.get("roundtrip_max_abs_diff") if isinstance(sm, dict) else None
    if _num(diff) and diff > 1e-3:
        yield "warning", "export_mismatch", (f"The exported SavedModel differs from the trained model by up to "
                                             f"{diff:.3g} in probability.")


def _section_warnings(f: _Facts):
    """Warnings a concern wrote into its own section (``<section>.warnings``), prefixed with its name."""
    for key in ("privacy", "fairness", "robustness", "explanations", "compression", "export"):
        sec = f.report.get(key)
        msgs = sec.get("warnings") if isinstance(sec, dict) else None
        for msg in msgs if isinstance(msgs, list) else ():
            text = msg.get("message") if isinstance(msg, dict) else msg
            if text:
                yield "warning", key, f"{key}: {text}"


def _gates(f: _Facts):
    gates = f.report.get("gates")
    if isinstance(gates, dict) and not gates.get("passed", True):
        failed = [str(g) for g in gates.get("failed") or []]
        yield "warning", "gates_failed", (f"{len(failed)} release gate(s) failed" + (": " + "; ".join(failed)
                                                                                    if failed else "") + ".")


#: the warning rules, in the order their warnings appear
RULES = (_degenerate, _positive_class, _intended_use, _small_groups, _deidentification, _label_imbalance,
         _dp_preprocessing, _wide_cis, _privacy, _fairness, _robustness, _compression, _export, _section_warnings, _gates)


def warnings_for(report: dict) -> list:
    """Automatic limitations: each ``{level, code, message}``; levels ``warning`` and ``info`` (see RULES)."""
    facts = _Facts(report)
    return [{"level": level, "code": code, "message": message}
            for rule in RULES for level, code, message in rule(facts)]


def derive(report: dict) -> dict:
    """Fill the derived sections in place (CIs, ``scorecard``, ``gates``, ``warnings``) and return the report."""
    add_metric_cis(report.get("evaluation"))
    cfg = _cfg(report)
    report["scorecard"] = _scorecard.compute(report, cfg.get("scorecard"))
    gates = cfg.get("gates") or []
    has_thresholds = any(report["scorecard"].get(k) is not None for k in ("min_ethics", "max_bias"))
    report["gates"] = evaluate(gates, report, report["scorecard"]) if (gates or has_thresholds) else None
    report["warnings"] = warnings_for(report)
    return report
