"""report.html: one self-contained file (inline CSS, plots as data: URIs, no scripts, no network).

Rendered with jinja2 and ``autoescape=True``: every string from the config, the data or a concern is
HTML-escaped. The only markup that is not escaped is (a) what the template itself writes and (b) HTML
snippets a concern ships under keys ending in ``_html`` (highlighted text explanations), which pass
through :func:`tfresp.report.sanitize.sanitize_html`'s allow-list first. A Content-Security-Policy
meta tag (``default-src 'none'``) additionally stops the browser from running scripts or fetching anything.

Sections with names from DESIGN.md are laid out specifically; any key a view does not know is rendered
generically (nested tables) under "More details", so new report fields show up without template changes.
"""
from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Optional

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from tfresp.report.sanitize import sanitize_html

MAX_IMAGE_BYTES = 5 * 1024 * 1024
_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
KNOWN = ("schema_version", "run", "data", "model", "training", "evaluation", "privacy", "fairness", "robustness",
         "explanations", "compression", "export", "gates", "scorecard", "warnings", "plots")
GROUP_METRICS = ("count", "selection_rate", "true_positive_rate", "false_positive_rate", "accuracy", "precision",
                 "ece")
GROUP_COMPLEMENTS = ("false_negative_rate", "true_negative_rate")
EVAL_METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")


# --- formatting ------------------------------------------------------------------------------------------------

def fmt(value, digits: int = 4) -> str:
    """Human formatting of a report value (``—`` for missing)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.3g}"
        if abs(value) >= 1000:
            return f"{value:,.1f}"
        return f"{value:.{digits}f}"
    return str(value)


def fmt_ci(ci) -> str:
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(c, (int, float)) for c in ci):
        lo, hi = float(ci[0]), float(ci[1])
        if max(abs(lo), abs(hi)) < 10:  # interval ends share one fixed format
            return f"[{lo:.3f}, {hi:.3f}]"
        return f"[{fmt(lo, 3)}, {fmt(hi, 3)}]"
    return ""


def is_scalar(v) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _is_ci(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(isinstance(c, (int, float)) or c is None for c in v)


def prepare_generic(value, key: str = ""):
    """Convert a section value for the generic renderer: ``*_html`` strings become sanitized Markup."""
    if isinstance(value, str) and (key == "html" or key.endswith("_html")):
        return Markup(sanitize_html(value))
    if isinstance(value, dict):
        return {str(k): prepare_generic(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [prepare_generic(v, key) for v in value]
    return value


# --- images ---------------------------------------------------------------------------------------------------

def data_uri(run_dir: Path, rel: str) -> Optional[str]:
    """The file ``run_dir/rel`` as a ``data:`` URI; None when it is missing, too large, not an image, or outside
    the run directory (report.json is editable: it must not make the report embed arbitrary files)."""
    try:
        base = Path(run_dir).resolve()
        path = (base / str(rel)).resolve()
        path.relative_to(base)
    except (ValueError, OSError):
        return None
    mime = _MIME.get(path.suffix.lower())
    if mime is None or not path.is_file() or path.stat().st_size > MAX_IMAGE_BYTES:
        return None
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _plot_paths(value) -> list:
    """``[(title, relpath)]`` from a section's ``plots`` (dict name->path, list of paths or dicts)."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, str):
                out.append((str(k), v))
            elif isinstance(v, (list, dict)):
                out.extend((f"{k} {t}".strip(), p) for t, p in _plot_paths(v))
    elif isinstance(value, list):
        for v in value:
            if isinstance(v, str):
                out.append((Path(v).stem.replace("_", " "), v))
            elif isinstance(v, dict) and isinstance(v.get("path"), str):
                out.append((str(v.get("title") or Path(v["path"]).stem), v["path"]))
    elif isinstance(value, str):
        out.append((Path(value).stem.replace("_", " "), value))
    return out


class _Images:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.seen = set()

    def take(self, pairs) -> list:
        out = []
        for title, rel in pairs:
            if rel in self.seen:
                continue
            uri = data_uri(self.run_dir, rel)
            if uri:
                self.seen.add(rel)
                out.append({"title": title, "uri": uri, "path": rel})
        return out


# --- derived plots ----------------------------------------------------------------------------------------------

def _epsilon_points(priv: dict):
    for key in ("epsilon_curve", "epsilon_history", "ledger", "curve"):
        v = priv.get(key)
        if isinstance(v, dict):
            xs = v.get("steps") or v.get("step") or v.get("epochs") or v.get("x")
            ys = v.get("epsilon") or v.get("epsilons") or v.get("y")
            if isinstance(xs, list) and isinstance(ys, list) and len(xs) == len(ys):
                return list(zip(xs, ys))
        if isinstance(v, list) and v:
            if all(isinstance(p, (list, tuple)) and len(p) == 2 for p in v):
                return [tuple(p) for p in v]
            if all(isinstance(p, dict) and "epsilon" in p for p in v):
                xk = next((k for k in ("step", "steps", "epoch") if k in v[0]), None)
                return [(p.get(xk, i) if xk else i, p["epsilon"]) for i, p in enumerate(v)]
    return None


def has_own(section) -> bool:
    """Whether a concern drew its own plots (then the report does not draw a duplicate)."""
    return isinstance(section, dict) and bool(_plot_paths(section.get("plots")))


def derived_plots(report: dict, run_dir: Path) -> dict:
    """Draw the plots the report derives from its numbers; ``{section: [(title, relpath)]}``."""
    from tfresp.report import plots

    out: dict = {}
    pdir = Path(run_dir) / "plots"
    priv = report.get("privacy")
    if isinstance(priv, dict) and not has_own(priv):
        pts = _epsilon_points(priv)
        if pts and plots.epsilon_curve(pts, pdir / "report_epsilon.png"):
            out.setdefault("privacy", []).append(("epsilon during training", "plots/report_epsilon.png"))
    fair = report.get("fairness")
    if isinstance(fair, dict) and not has_own(fair):
        for attr, sec in fair.items():
            safe = "".join(c if c.isalnum() else "_" for c in str(attr))[:40]
            if isinstance(sec, dict) and plots.fairness_groups(attr, sec, pdir / f"report_fairness_{safe}.png"):
                out.setdefault("fairness", []).append((f"{attr} by group", f"plots/report_fairness_{safe}.png"))
    rob = report.get("robustness")
    if isinstance(rob, dict) and not has_own(rob):
        clean = ((report.get("evaluation") or {}).get("test") or {}).get("accuracy")
        if plots.robustness_sweep(rob, clean, pdir / "report_robustness.png"):
            out.setdefault("robustness", []).append(("accuracy vs epsilon", "plots/report_robustness.png"))
    comp = report.get("compression")
    if isinstance(comp, dict) and not has_own(comp):
        rows = [(k, v.get("bytes"), v.get("accuracy")) for k, v in comp.items() if isinstance(v, dict)]
        if plots.compression_tradeoff(rows, pdir / "report_compression.png"):
            out.setdefault("compression", []).append(("size vs accuracy", "plots/report_compression.png"))
    if plots.scorecard_terms(report.get("scorecard"), pdir / "report_scorecard.png"):
        out.setdefault("scorecard", []).append(("score terms", "plots/report_scorecard.png"))
    return out


# --- view model ---------------------------------------------------------------------------------------------------

def _rest(section: dict, used) -> dict:
    return {k: prepare_generic(v, k) for k, v in section.items() if k not in used and k != "plots"}


def _pick_columns(rows: list, preferred, skip=(), limit: int = 9) -> list:
    """Table columns: the preferred scalar ones first, then other scalars, at most ``limit``."""
    present = []
    for v in rows:
        present.extend(c for c in v if c not in present and c not in skip and not c.endswith("_ci")
                       and is_scalar(v[c]))
    cols = [c for c in preferred if c in present] + [c for c in present if c not in preferred]
    return cols[:limit]


def _attr_like(sec) -> bool:
    return isinstance(sec, dict) and ("by_group" in sec or "demographic_parity_difference" in sec)


def _summary_cards(r: dict) -> list:
    from tfresp.evaluation.served import raw_metrics, served_metrics

    cards = []
    ev = served_metrics(r)
    raw = raw_metrics(r)
    blocked = (r.get("scorecard") or {}).get("blocked_by") or []
    if blocked:
        cards.append(("Model", "DEGENERATE", ", ".join(blocked), "bad"))
    if isinstance(ev.get("accuracy"), (int, float)):
        note = fmt_ci(ev.get("accuracy_ci")) + " 95% CI" if ev.get("accuracy_ci") else ""
        if raw and isinstance(raw.get("accuracy"), (int, float)):
            note += f"; served (post-processed); raw model {fmt(raw['accuracy'], 3)}"
        cards.append(("Test accuracy", fmt(ev["accuracy"], 3), note, "neutral"))
    priv = r.get("privacy") or {}
    eps = priv.get("epsilon") if isinstance(priv, dict) else None
    cards.append(("Privacy ε", fmt(eps, 2) if eps is not None else "none",
                  f"δ = {fmt(priv.get('delta'))}" if eps is not None else "no DP guarantee",
                  "good" if isinstance(eps, (int, float)) and eps <= 10 else "bad"))
    fair = r.get("fairness")
    if isinstance(fair, dict):
        gaps = [(a, s["equalized_odds_difference"]) for a, s in fair.items()
                if isinstance(s, dict) and isinstance(s.get("equalized_odds_difference"), (int, float))]
        if gaps:
            a, g = max(gaps, key=lambda t: t[1])
            cards.append(("Max EO difference", fmt(g, 3), f"attribute {a}",
                          "good" if g <= 0.1 and not blocked else "bad"))
    else:
        cards.append(("Fairness", "not audited", "", "bad" if (r.get("data") or {}).get("sensitive") else "neutral"))
    rob = r.get("robustness")
    if isinstance(rob, dict):
        accs = [(k, v["accuracy"]) for k, v in rob.items() if "@" in str(k) and isinstance(v, dict)
                and isinstance(v.get("accuracy"), (int, float))]
        if accs:
            k, a = min(accs, key=lambda t: t[1])
            cards.append(("Worst robust acc.", fmt(a, 3), k, "good" if a >= 0.5 else "bad"))
    card = r.get("scorecard") or {}
    for kind, label in (("ethics", "Ethics score E"), ("bias", "Bias score B")):
        v = (card.get(kind) or {}).get("normalized")
        if v is not None:
            good = (v >= 0.5 if kind == "ethics" else v <= 0.1) and not blocked
            cards.append((label, fmt(v, 3), "normalized, " + ("higher" if kind == "ethics" else "lower") + " is better",
                          "good" if good else "bad"))
    g = r.get("gates")
    if isinstance(g, dict):
        cards.append(("Release gates", "PASSED" if g.get("passed") else "FAILED",
                      f"{g.get('count', 0) - len(g.get('failed', []))}/{g.get('count', 0)} passed",
                      "good" if g.get("passed") else "bad"))
    return cards


# the verdicts of fairness.mitigation.verdict.status (tfresp.fairness.concern.mitigation_verdict): only "met"
# is good; anything else (missed, worse, refused, degenerate, unknown) is shown as a finding
VERDICT_CLASS = {"met": "pass"}


def _fairness_inputs(inputs) -> Optional[dict]:
    """``fairness.inputs`` for the template: sensitive attributes used as inputs, proxies, the proxy note,
    and whatever else the section holds (shown generically)."""
    if not isinstance(inputs, dict):
        return None
    proxies = [p for p in inputs.get("proxies") or [] if isinstance(p, dict)]
    known = {"sensitive_as_inputs", "proxies", "proxies_note"}
    return {"sensitive_as_inputs": [str(a) for a in inputs.get("sensitive_as_inputs") or []],
            "proxies": proxies, "screened": isinstance(inputs.get("proxies"), list), "note": inputs.get("proxies_note"),
            "rest": {k: prepare_generic(v, k) for k, v in inputs.items() if k not in known}}


def _view_model(r: dict, plots_for, images) -> dict:
    return {"rest": _rest(r.get("model") or {}, {"kind", "name", "architecture", "parameters",
                                                 "trainable_parameters", "trainable_percent", "base_checkpoint"})}


def _view_data(r: dict, plots_for, images) -> dict:
    data = r.get("data") or {}
    splits = data.get("splits") or {}
    group_tables: dict = {}
    min_group = (((r.get("run") or {}).get("config") or {}).get("fairness") or {}).get("min_group_size") or 30
    for split, sec in splits.items():
        for attr, groups in ((sec or {}).get("group_sizes") or {}).items():
            for g, n in groups.items():
                group_tables.setdefault(attr, {}).setdefault(g, {})[split] = n
    source = data.get("source") or {}
    return {"splits": splits, "groups": group_tables, "min_group": min_group, "split_names": list(splits),
            "rest": _rest(data, {"source", "kind", "classes", "features", "encoded_dim", "sensitive", "splits",
                                 "deidentification"}),
            "source_rest": _rest(source, {"name", "kind", "citation", "license", "files", "deidentification"}),
            "deid": prepare_generic(source.get("deidentification") or data.get("deidentification"))}


def _view_training(r: dict, plots_for, images) -> dict:
    tr = r.get("training") or {}
    hist = tr.get("history") or {}
    return {"plots": plots_for("training", tr),
            "final": [(k, v[-1] if v else None, len(v)) for k, v in hist.items() if isinstance(v, list)],
            "rest": _rest(tr, {"epochs_requested", "epochs_run", "batch_size", "optimizer", "learning_rate",
                               "strategy", "replicas", "history", "timings", "notes"})}


def _view_evaluation(r: dict, plots_for, images) -> dict:
    ev = r.get("evaluation") or {}
    test, val = ev.get("test") or {}, ev.get("validation") or {}
    post = next((ev[k] for k in ("served", "test_postprocessed") if isinstance(ev.get(k), dict)), None)
    return {"metrics": [(m, test.get(m), test.get(f"{m}_ci"), val.get(m), (post or {}).get(m))
                        for m in EVAL_METRICS if m in test],
            "post": post is not None,
            "test": test, "rest": _rest(ev, {"test", "validation", "split_used", "test_postprocessed", "served"}),
            "test_rest": _rest(test, set(EVAL_METRICS) | {f"{m}_ci" for m in EVAL_METRICS}
                               | {"rows", "per_class", "confusion_matrix", "threshold"}),
            "plots": plots_for("evaluation", ev)}


PRIVACY_KEYS = ("epsilon", "delta", "noise_multiplier", "l2_norm_clip", "steps", "sampling_rate", "sampling",
                "accountant", "epochs", "batch_size")


def _view_privacy(r: dict, plots_for, images) -> Optional[dict]:
    priv = r.get("privacy")
    if not isinstance(priv, dict):
        return None
    from tfresp.privacy.statement import releases

    budget = priv.get("budget")
    return {"kv": [(k, priv[k]) for k in PRIVACY_KEYS if k in priv],
            "audit": priv.get("audit") if isinstance(priv.get("audit"), dict) else None,
            "releases": releases(priv) if isinstance(budget, dict) else [],
            "plots": plots_for("privacy", priv),
            "rest": _rest(priv, set(PRIVACY_KEYS) | {"statement", "audit"})}


def _fairness_items(fair: dict) -> list:
    """``(name, section)`` per attribute; a section of attribute sections (intersections) is flattened."""
    items = []
    for attr, sec in fair.items():
        if isinstance(sec, dict) and not _attr_like(sec) and sec and all(
                isinstance(v, dict) and _attr_like(v) for v in sec.values()):
            items.extend((f"{sub} ({attr})", v) for sub, v in sec.items())
        else:
            items.append((attr, sec))
    return items


def _fairness_attr(attr: str, sec: dict) -> dict:
    by_group = sec.get("by_group") or {}
    present = []
    for g in by_group.values():
        present.extend(m for m in (g or {}) if not m.endswith("_ci") and m not in present)
    # FNR = 1 - TPR and TNR = 1 - FPR add width, not information: they stay in report.json
    metrics = [m for m in GROUP_METRICS if m in present] + [
        m for m in present if m not in GROUP_METRICS and m not in GROUP_COMPLEMENTS]
    numeric = {k for k, v in sec.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {"name": attr, "summary": [(k, sec[k], sec.get(f"{k}_ci")) for k in sec if k in numeric],
            "metrics": metrics, "by_group": by_group,
            "rest": _rest(sec, {"by_group"} | numeric | {k for k in sec if k.endswith("_ci")})}


def _classes(r: dict):
    """(positive, negative) class names of a binary run, for rules in words."""
    classes = [str(c) for c in (r.get("data") or {}).get("classes") or []]
    pc = ((r.get("evaluation") or {}).get("positive_class") or {})
    pos = str(pc.get("positive_class")) if isinstance(pc, dict) and pc.get("positive_class") is not None else None
    if len(classes) == 2:
        pos = pos if pos in classes else classes[1]
        return pos, next(c for c in classes if c != pos) if classes.count(pos) == 1 else "negative"
    return pos or "positive", "negative"


def _view_fairness(r: dict, plots_for, images) -> Optional[dict]:
    fair = r.get("fairness")
    if not isinstance(fair, dict):
        return None
    from tfresp.report.words import rules_in_words

    attrs, other = [], {}
    for attr, sec in _fairness_items(fair):
        if _attr_like(sec):
            attrs.append(_fairness_attr(attr, sec))
        elif attr != "plots":
            other[attr] = prepare_generic(sec, attr)
    mitigation = other.pop("mitigation", None)
    verdict = mitigation.pop("verdict", None) if isinstance(mitigation, dict) else None
    words = rules_in_words(fair.get("mitigation"), *_classes(r))
    if words and isinstance(mitigation, dict):  # the raw fields stay in report.json and under "More details"
        mitigation = {"rules (score = the model's probability of the positive class)": words,
                      **{k: v for k, v in mitigation.items() if k != "rules"},
                      "rules (raw fields)": mitigation.get("rules")}
    return {"attrs": attrs, "plots": plots_for("fairness", fair), "tradeoff": other.pop("tradeoff", None),
            "mitigation": mitigation, "verdict": verdict if isinstance(verdict, dict) else None,
            "rule_words": words, "inputs": _fairness_inputs(other.pop("inputs", None)), "rest": other}


def _view_robustness(r: dict, plots_for, images) -> Optional[dict]:
    rob = r.get("robustness")
    if not isinstance(rob, dict):
        return None
    sweep = [(k, v) for k, v in rob.items() if "@" in str(k) and isinstance(v, dict)]
    cols = _pick_columns([v for _, v in sweep], ("accuracy", "attack_success_rate", "max_perturbation",
                                                 "mean_perturbation", "steps", "restarts"),
                         skip=("attack", "epsilon", "norm"))
    return {"sweep": sweep, "cols": cols, "plots": plots_for("robustness", rob),
            "rest": _rest(rob, {k for k, _ in sweep})}


def _explanation_example(item: dict, images) -> dict:
    exp = next((item[k] for k in ("lime", "ig", "explanation") if isinstance(item.get(k), dict)), {})
    feats = [f for f in exp.get("features") or [] if isinstance(f, dict)]
    facts = [(k, exp[k]) for k in ("class_name", "probability", "local_r2", "intercept") if k in exp]
    if isinstance(exp.get("stability"), dict):
        facts.append(("stability (Jaccard)", exp["stability"].get("jaccard_mean")))
    return {"title": ", ".join(f"{k} {item[k]}" for k in ("row", "true", "predicted") if k in item),
            "html": Markup(sanitize_html(item["html"])) if isinstance(item.get("html"), str) else None,
            "features": feats, "cols": _columns(feats, 4), "facts": facts,
            "plots": images.take([("explanation", item["plot"])]) if isinstance(item.get("plot"), str) else [],
            "rest": _rest(item, {"row", "true", "predicted", "html", "lime", "ig", "explanation", "plot"})}


def _view_explanations(r: dict, plots_for, images) -> Optional[dict]:
    ex = r.get("explanations")
    if not isinstance(ex, dict):
        return None
    examples = [_explanation_example(item, images) for item in ex.get("examples") or [] if isinstance(item, dict)]
    return {"examples": examples, "plots": plots_for("explanations", ex),
            "rest": _rest(ex, {"examples"} if examples else set())}


COMPRESSION_COLUMNS = ("format", "accuracy", "bytes", "gzip_bytes", "latency_ms_p50", "latency_ms_p95", "sparsity",
                       "parameters", "nonzero_parameters", "weights_bytes")  # weights_bytes: a BERT student's size


def _view_compression(r: dict, plots_for, images) -> Optional[dict]:
    comp = r.get("compression")
    if not isinstance(comp, dict):
        return None
    variants = [(k, v) for k, v in comp.items() if isinstance(v, dict) and
                any(m in v for m in ("accuracy", "bytes", "gzip_bytes", "latency_ms_p50"))]
    return {"variants": variants, "cols": _pick_columns([v for _, v in variants], COMPRESSION_COLUMNS),
            "plots": plots_for("compression", comp), "rest": _rest(comp, {k for k, _ in variants})}


def _view_export(r: dict, plots_for, images) -> Optional[dict]:
    exp = r.get("export")
    return {"rest": _rest(exp, set())} if isinstance(exp, dict) else None


#: section name -> view builder ``fn(report, plots_for, images)``; a builder returning None leaves the section out
#: (the order matters: a plot file shared by two sections is shown in the first)
SECTION_VIEWS = (("model", _view_model), ("data", _view_data), ("training", _view_training),
                 ("evaluation", _view_evaluation), ("privacy", _view_privacy), ("fairness", _view_fairness),
                 ("robustness", _view_robustness), ("explanations", _view_explanations),
                 ("compression", _view_compression), ("export", _view_export))


def first_screen(r: dict) -> dict:
    """What the summary shows above the fold: the failed release gates, by name, with value and threshold."""
    g = r.get("gates")
    failed = []
    if isinstance(g, dict):
        for res in g.get("results") or []:
            if isinstance(res, dict) and res.get("passed") is False:
                failed.append({"gate": res.get("gate") or res.get("name"), "value": res.get("value"),
                               "reason": res.get("reason"), "model": res.get("model")})
        if not failed:
            failed = [{"gate": name, "value": None, "reason": None, "model": None} for name in g.get("failed") or []]
    return {"failed_gates": failed}


def build_view(report: dict, run_dir: Path) -> dict:
    """Everything the template needs, with section-specific tables and generic leftovers."""
    r = report
    images = _Images(run_dir)
    derived = derived_plots(r, run_dir)
    top_plots = _plot_paths(r.get("plots") or {})

    def plots_for(name, section):
        own = _plot_paths(section.get("plots")) if isinstance(section, dict) else []
        named = [(t, p) for t, p in top_plots if t.split()[0].startswith(name[:5])]
        return images.take(own + derived.get(name, []) + named)

    sections = {}
    for name, builder in SECTION_VIEWS:
        view = builder(r, plots_for, images)
        if view is not None:
            sections[name] = view
    sections["scorecard"] = {"plots": images.take(derived.get("scorecard", []))}
    sections["other"] = {k: prepare_generic(v, k) for k, v in r.items() if k not in KNOWN and v is not None}
    return {"r": r, "run": r.get("run") or {}, "cards": _summary_cards(r), "first": first_screen(r),
            "sections": sections, "leftover_plots": images.take(top_plots),
            "config_yaml": yaml.safe_dump((r.get("run") or {}).get("config") or {}, sort_keys=False)}


def leaves(value) -> int:
    """Number of scalar leaves of a nested value (decides whether the generic renderer collapses it)."""
    if isinstance(value, dict):
        return sum(leaves(v) for v in value.values())
    if isinstance(value, list):
        return sum(leaves(v) for v in value)
    return 1


def _columns(rows: list, limit: int = 14) -> list:
    cols = []
    for row in rows[:50]:
        for k in row:
            if k not in cols:
                cols.append(k)
    return cols[:limit]


def _env() -> Environment:
    env = Environment(loader=PackageLoader("tfresp.report", "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    env.filters["ci"] = fmt_ci
    env.tests["scalar"] = is_scalar
    env.tests["ci"] = _is_ci
    env.filters["columns"] = _columns
    env.filters["leaves"] = leaves
    env.globals["verdict_class"] = lambda status: VERDICT_CLASS.get(str(status), "fail")
    return env


def render_html(report: dict, run_dir) -> str:
    """The self-contained HTML report of ``report`` (plots are read from, and derived ones drawn into,
    ``run_dir/plots``)."""
    return _env().get_template("report.html.j2").render(**build_view(report, Path(run_dir)))
