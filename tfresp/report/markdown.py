"""report.md: a Hugging Face model card (YAML header + sections) rendered with jinja2."""
from __future__ import annotations

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined


def _fmt(value, digits=4):
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def model_card_header(report: dict) -> dict:
    run = report["run"]
    ev = (report.get("evaluation") or {}).get("test", {})
    metrics = [{"type": k, "value": ev[k], "name": f"test {k}"} for k in ("accuracy", "f1", "roc_auc")
               if ev.get(k) is not None]
    priv = report.get("privacy") or {}
    if priv.get("epsilon") is not None:
        metrics.append({"type": "dp_epsilon", "value": priv["epsilon"], "name": "DP epsilon"})
    tags = ["tfresp", "keras", "tensorflow"] + [k for k in ("privacy", "fairness", "robustness", "compression")
                                                 if report.get(k)]
    if priv:
        tags.append("differential-privacy")
    source = report["data"]["source"]
    return {
        "license": run.get("license") or "other",
        "library_name": "tf-keras",
        "tags": tags,
        "datasets": [source.get("name", "unknown")],
        "metrics": [m["type"] for m in metrics],
        "model-index": [{"name": run["name"], "results": [{
            "task": {"type": "text-classification" if report["data"].get("kind") == "text"
                     else "tabular-classification"},
            "dataset": {"name": source.get("name", "unknown"), "type": source.get("name", "unknown"),
                        "split": "test"},
            "metrics": metrics}]}],
    }


def render_markdown(report: dict) -> str:
    env = Environment(loader=PackageLoader("tfresp.report", "templates"), undefined=StrictUndefined,
                      autoescape=False, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    header = yaml.safe_dump(model_card_header(report), sort_keys=False)
    body = env.get_template("report.md.j2").render(r=report)
    return f"---\n{header}---\n\n{body}"
