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


def _w(out: list, level: str, code: str, message: str) -> None:
    out.append({"level": level, "code": code, "message": message})


def dp_preprocessing_warnings(report: dict, out: list) -> None:
    """DP preprocessing that folded categories (values below the noisy-count threshold are encoded like unknown
    ones) or dropped a column: by name, with the share of held-out rows affected (never of training rows)."""
    pre = (report.get("data") or {}).get("preprocessing") or {}
    if not isinstance(pre, dict):
        return
    dropped = [str(c) for c in pre.get("dropped_columns") or []]
    if dropped:
        _w(out, "warning", "dp_dropped_columns", "DP preprocessing dropped column(s) " + ", ".join(dropped) + ": no "
           "value passed the noisy-count threshold, so the model ignores them for 100% of rows. Declare them in "
           "data.categories / data.numeric_ranges, raise privacy.preprocessing_epsilon or use more rows.")
    folded = pre.get("folded") or {}
    for col, f in sorted((folded.get("columns") or {}).items()):
        if col in dropped or not isinstance(f, dict):
            continue
        named = sorted((f.get("values") or {}).items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{v} {100 * share:.1f}%" for v, share in named[:8])
        rest = f.get("unnamed_rows") or 0
        share = float(f.get("share_of_rows") or 0)
        _w(out, "warning" if share >= 0.01 else "info", "dp_folded_categories",
           f"DP preprocessing folded categories of '{col}' into one 'other' bucket (encoded like an unknown value): {100 * share:.1f}% of the "
           f"{folded.get('rows_from', 'held-out rows')}" + (f" ({shown}" + (f"; {rest} rows of rarer values"
                                                                              if rest else "") + ")" if shown else "")
           + ". The model cannot tell these values apart; declare the column's values in data.categories if they "
           "matter.")


def warnings_for(report: dict) -> list:
    """Automatic limitations: each ``{level, code, message}``; levels ``warning`` and ``info``."""
    out: list = []
    # first: what makes the other numbers untrustworthy (shown at the top of the report)
    for f in findings(report):
        _w(out, "warning", f"degenerate_{f['code']}", f["message"])
    positive = (report.get("evaluation") or {}).get("positive_class")
    if isinstance(positive, dict) and positive.get("ambiguous"):
        _w(out, "warning", "ambiguous_positive_class", f"The positive class '{positive.get('positive_class')}' was "
           f"chosen as the {positive.get('chosen_by')}; recall, selection rates and fairness gaps count it. Set "
           "data.positive_class.")
    cfg = _cfg(report)
    run = report.get("run") or {}
    data = report.get("data") or {}
    ev = served_metrics(report)
    priv = report.get("privacy")
    fair = report.get("fairness")
    rob = report.get("robustness")
    comp = report.get("compression")

    if not run.get("intended_use"):
        _w(out, "warning", "no_intended_use", "The intended use is not stated (report.intended_use); a model card "
           "without it cannot be reviewed for fitness of purpose.")
    if not run.get("out_of_scope"):
        _w(out, "info", "no_out_of_scope", "Out-of-scope uses are not stated (report.out_of_scope).")

    min_group = ((cfg.get("fairness") or {}).get("min_group_size")) or 30
    test_split = ((data.get("splits") or {}).get("test")) or {}
    for attr, groups in (test_split.get("group_sizes") or {}).items():
        small = {g: n for g, n in groups.items() if n < min_group}
        if small:
            shown = ", ".join(f"{g} (n={n})" for g, n in sorted(small.items(), key=lambda kv: kv[1]))
            _w(out, "warning", "small_groups", f"Sensitive attribute '{attr}': test groups smaller than "
               f"{min_group}: {shown}. Their metrics are unreliable and may be suppressed.")
    deid = (data.get("source") or {}).get("deidentification") or data.get("deidentification")
    if data.get("kind") == "text" and not deid:
        _w(out, "warning", "no_deidentification", "Free text was used without de-identification "
           "(data.deidentify): e-mails, handles, URLs or phone numbers may be memorized by the model.")
    balance = (((data.get("splits") or {}).get("train")) or {}).get("label_balance") or {}
    if balance and min(balance.values()) < 0.1:
        c, v = min(balance.items(), key=lambda kv: kv[1])
        _w(out, "info", "label_imbalance", f"Class '{c}' is {100 * v:.1f}% of the training labels; accuracy "
           "alone overstates quality, see balanced accuracy and per-class metrics.")

    dp_preprocessing_warnings(report, out)
    acc_ci = ev.get("accuracy_ci")
    if isinstance(acc_ci, list) and len(acc_ci) == 2 and None not in acc_ci and acc_ci[1] - acc_ci[0] > 0.1:
        _w(out, "warning", "wide_ci", f"Test accuracy 95% CI is wide ({acc_ci[0]:.3f} to {acc_ci[1]:.3f}): "
           f"the test set ({ev.get('rows')} rows) is too small for precise claims.")
    if isinstance(fair, dict):
        for attr, sec in fair.items():
            if not isinstance(sec, dict):
                continue
            for m in ("demographic_parity_difference", "equalized_odds_difference"):
                ci = sec.get(f"{m}_ci")
                if isinstance(ci, list) and len(ci) == 2 and None not in ci and ci[1] - ci[0] > 0.1:
                    _w(out, "warning", "wide_ci", f"Fairness '{attr}' {m.replace('_', ' ')} has a wide 95% CI "
                       f"({ci[0]:.3f} to {ci[1]:.3f}); the gap is not precisely estimated.")

    if not priv:
        _w(out, "warning", "no_privacy", "No differential privacy: the model may memorize and leak individual "
           "training records (no privacy guarantee is claimed).")
    else:
        eps = priv.get("epsilon")
        if isinstance(eps, (int, float)) and eps > 10:
            _w(out, "warning", "large_epsilon", f"Privacy budget epsilon = {eps:.2f} > 10 gives a weak formal "
               "guarantee.")
        mia = (priv.get("audit") or {}).get("mia_auc") if isinstance(priv.get("audit"), dict) else None
        if isinstance(mia, (int, float)) and mia > 0.6:
            _w(out, "warning", "mia", f"Membership-inference AUC {mia:.3f} is well above chance (0.5).")

    if data.get("sensitive") and not fair:
        _w(out, "warning", "no_fairness_audit", "The data has sensitive attributes ("
           + ", ".join(map(str, data["sensitive"])) + ") but no fairness audit ran (enable `fairness:`).")
    elif isinstance(fair, dict):
        for attr, sec in fair.items():
            if isinstance(sec, dict) and isinstance(sec.get("equalized_odds_difference"), (int, float)) \
                    and sec["equalized_odds_difference"] > 0.1:
                _w(out, "warning", "fairness_gap", f"Equalized-odds difference for '{attr}' is "
                   f"{sec['equalized_odds_difference']:.3f} (> 0.1).")

    if isinstance(rob, dict):
        for key, sec in rob.items():
            if _ROBUST_KEY.match(str(key)) and isinstance(sec, dict) \
                    and isinstance(sec.get("accuracy"), (int, float)) and sec["accuracy"] < 0.1:
                _w(out, "warning", "not_robust", f"Robust accuracy under {key} is {sec['accuracy']:.3f}: the model "
                   "is essentially not robust at that perturbation size.")
    else:
        _w(out, "info", "no_robustness", "Adversarial robustness was not evaluated.")

    if isinstance(comp, dict) and isinstance(ev.get("accuracy"), (int, float)):
        for variant, sec in comp.items():
            if isinstance(sec, dict) and isinstance(sec.get("accuracy"), (int, float)) \
                    and ev["accuracy"] - sec["accuracy"] > 0.02:
                _w(out, "warning", "compression_drop", f"Compressed variant '{variant}' loses "
                   f"{100 * (ev['accuracy'] - sec['accuracy']):.1f} accuracy points.")

    sm = ((report.get("export") or {}).get("saved_model")) or {}
    diff = sm.get("roundtrip_max_abs_diff") if isinstance(sm, dict) else None
    if isinstance(diff, (int, float)) and diff > 1e-3:
        _w(out, "warning", "export_mismatch", f"The exported SavedModel differs from the trained model by up to "
           f"{diff:.3g} in probability.")

    for key in ("privacy", "fairness", "robustness", "explanations", "compression", "export"):
        sec = report.get(key)
        for msg in (sec.get("warnings") or []) if isinstance(sec, dict) and isinstance(sec.get("warnings"), list) \
                else []:
            text = msg.get("message") if isinstance(msg, dict) else msg
            if text:
                _w(out, "warning", key, f"{key}: {text}")

    gates = report.get("gates")
    if isinstance(gates, dict) and not gates.get("passed", True):
        _w(out, "warning", "gates_failed", f"{len(gates.get('failed', []))} release gate(s) failed.")
    return out


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
