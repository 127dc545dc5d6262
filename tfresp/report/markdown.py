"""report.md: a Hugging Face model card (YAML metadata header + sections) rendered with jinja2.

The header follows the Hub's model-card metadata spec (``license``, ``library_name``, ``tags``, ``datasets``,
``metrics``, ``base_model``, ``pipeline_tag`` and ``model-index`` with self-reported eval results); the body
follows Mitchell et al. 2019, "Model Cards for Model Reporting" (model details, intended use, factors/data,
metrics, evaluation, ethical considerations, caveats). User text is escaped so it cannot inject HTML into a
rendered card.
"""
from __future__ import annotations

import math
import re

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined

from tfresp.report.html import fmt, fmt_ci

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|])")


def _fmt(value, digits=4):
    return "n/a" if value is None else fmt(value, digits)


def md_escape(text) -> str:
    """Escape Markdown/HTML control characters in user text (``<script>`` renders as text)."""
    if text is None:
        return ""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def md_text(text) -> str:
    """User prose for a paragraph: HTML-significant characters become entities, line breaks are kept."""
    if text is None:
        return ""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def flatten(value, prefix: str = "", limit: int = 40, max_depth: int = 2) -> list:
    """``[(dotted.key, shown)]`` of a nested section for generic rendering in the model card.

    The card stays readable: scalars up to ``max_depth`` levels below the section, lists of scalars
    joined, deeper structures and lists of records summarized (they are in report.json / report.html).
    """
    out = []

    def walk(v, p, depth):
        if len(out) >= limit:
            return
        if isinstance(v, dict):
            if depth >= max_depth and p:
                out.append((p, f"({len(v)} entries: see report.json)"))
                return
            for k, x in v.items():
                if k not in ("plots", "plot", "ledger"):
                    walk(x, f"{p}.{k}" if p else str(k), depth + 1)
        elif isinstance(v, list) and all(isinstance(x, (int, float, str, bool)) or x is None for x in v):
            shown = ", ".join(_fmt(x, 3) for x in v[:8]) + (f", … ({len(v)} values)" if len(v) > 8 else "")
            out.append((p, shown or "(none)"))
        elif isinstance(v, list):
            out.append((p, f"({len(v)} records: see report.json)"))
        else:
            out.append((p, _fmt(v)))

    walk(value, prefix, 1 if prefix else 0)
    if len(out) >= limit:
        out.append(("…", "more in report.json"))
    return out


def plot_list(section) -> list:
    """Relative PNG paths a section lists under ``plots`` (dict or list form)."""
    plots = section.get("plots") if isinstance(section, dict) else None
    if isinstance(plots, dict):
        return [p for p in plots.values() if isinstance(p, str)]
    if isinstance(plots, list):
        return [p for p in plots if isinstance(p, str)]
    return []


def _pipeline_tag(report: dict) -> str:
    kind = (report.get("data") or {}).get("kind")
    return {"text": "text-classification", "image": "image-classification"}.get(kind, "tabular-classification")


def model_card_header(report: dict) -> dict:
    """The model card's YAML metadata (Hub model-index with this run's test metrics)."""
    from tfresp.evaluation.served import raw_metrics, served_metrics

    run = report["run"]
    ev = served_metrics(report)  # the model as served (post-processing included); raw: evaluation.test
    source = (report.get("data") or {}).get("source") or {}
    ds_name = source.get("name", "unknown")
    metrics = [{"type": k, "value": round(float(ev[k]), 6), "name": f"Test {k.replace('_', ' ')}"}
               for k in ("accuracy", "balanced_accuracy", "f1", "roc_auc")
               if isinstance(ev.get(k), (int, float))]
    raw = raw_metrics(report)
    if raw and isinstance(raw.get("accuracy"), (int, float)):
        metrics.append({"type": "accuracy", "value": round(float(raw["accuracy"]), 6),
                        "name": "Test accuracy of the raw model (not served: the served model post-processes it)"})
    priv = report.get("privacy") or {}
    if isinstance(priv.get("epsilon"), (int, float)):
        metrics.append({"type": "dp_epsilon", "value": round(float(priv["epsilon"]), 6),
                        "name": f"DP epsilon (delta={priv.get('delta')})"})
    for attr, sec in sorted((report.get("fairness") or {}).items()):
        if isinstance(sec, dict):
            for m in ("demographic_parity_difference", "equalized_odds_difference"):
                if isinstance(sec.get(m), (int, float)):
                    metrics.append({"type": m, "value": round(float(sec[m]), 6), "name": f"{m} ({attr})"})
    for key, sec in sorted((report.get("robustness") or {}).items()):
        if "@" in str(key) and isinstance(sec, dict) and isinstance(sec.get("accuracy"), (int, float)):
            metrics.append({"type": "robust_accuracy", "value": round(float(sec["accuracy"]), 6),
                            "name": f"Robust accuracy {key}"})
    tags = ["tfresp", "keras", "tensorflow", "responsible-ai"]
    if priv:
        tags += ["differential-privacy", "dp-sgd"]
    for key, tag in (("fairness", "fairness"), ("robustness", "adversarial-robustness"),
                     ("explanations", "explainability"), ("compression", "model-compression")):
        if report.get(key):
            tags.append(tag)
    header = {
        "license": run.get("license") or "other",
        "library_name": "tf-keras",
        "pipeline_tag": _pipeline_tag(report),
        "tags": tags,
        "datasets": [ds_name],
        "metrics": sorted({m["type"] for m in metrics}),
    }
    base = (report.get("model") or {}).get("base_checkpoint")
    if base:
        header["base_model"] = str(base)
    if (report.get("data") or {}).get("kind") == "text":
        header["language"] = ["en"]
    header["model-index"] = [{"name": run["name"], "results": [{
        "task": {"type": _pipeline_tag(report), "name": _pipeline_tag(report).replace("-", " ").title()},
        "dataset": {"name": ds_name, "type": ds_name, "split": "test"},
        "metrics": [{**m, "verified": False} for m in metrics]}]}]
    return header


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


BUILTIN_SECTIONS = ("schema_version", "run", "data", "model", "training", "evaluation", "privacy", "fairness",
                    "robustness", "explanations", "compression", "export", "gates", "scorecard", "warnings", "plots")


def concern_markdown(report: dict) -> dict:
    """``{section key: markdown}`` for the report sections of concerns that render their own (``Concern.markdown``);
    other extra sections get the generic key/value list."""
    extra = [k for k, v in report.items() if k not in BUILTIN_SECTIONS and v is not None]
    if not extra:
        return {}
    from tfresp import concerns

    out = {}
    for c in concerns.registered():
        key = c.report_key or c.config_key
        if key in extra:
            text = c.markdown(report[key])
            if text:
                out[key] = text
    return out


def _releases(priv) -> list:
    from tfresp.privacy.statement import releases

    return releases(priv) if isinstance(priv, dict) and isinstance(priv.get("budget"), dict) else []


def _rule_words(report: dict) -> list:
    from tfresp.report.html import _classes
    from tfresp.report.words import rules_in_words

    return rules_in_words((report.get("fairness") or {}).get("mitigation"), *_classes(report))


def render_markdown(report: dict) -> str:
    """The full model card: ``---\\n<yaml>---\\n\\n<body>``."""
    env = Environment(loader=PackageLoader("tfresp.report", "templates"), undefined=StrictUndefined,
                      autoescape=False, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    env.filters["ci"] = fmt_ci
    env.filters["esc"] = md_escape
    env.filters["text"] = md_text
    env.filters["flatten"] = flatten
    env.filters["plot_list"] = plot_list
    env.tests["finite"] = _finite
    env.filters["code"] = lambda text: "`" + " ".join(str(text).replace("`", "'").split()) + "`"  # one line, no `
    env.globals["privacy_releases"] = _releases
    env.globals["rule_words"] = _rule_words
    header = yaml.safe_dump(model_card_header(report), sort_keys=False, allow_unicode=True)
    body = env.get_template("report.md.j2").render(r=report, run=report.get("run") or {},
                                                   custom=concern_markdown(report))
    body = re.sub(r"\n{3,}", "\n\n", body)
    return f"---\n{header}---\n\n{body}"
