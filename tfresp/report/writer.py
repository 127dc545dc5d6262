"""Assemble the report from a finished run and write report.json / report.md (and html)."""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np

from tfresp.report.environment import config_hash, git_hash, versions
from tfresp.report.derive import derive
from tfresp.privacy.releases import protect as protect_releases

SCHEMA_VERSION = "1.2"  # see tfresp/report/schema.json (changelog in its description)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating,)):
        v = float(obj)
        return None if np.isnan(v) or np.isinf(v) else v
    if isinstance(obj, float):
        return None if (obj != obj or obj in (float("inf"), float("-inf"))) else obj
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def model_section(ctx) -> dict:
    core = ctx.core
    total = int(sum(int(np.prod(v.shape)) for v in core.weights))
    trainable = int(sum(int(np.prod(v.shape)) for v in core.trainable_weights))
    return {
        "kind": ctx.config.model.kind,
        "name": core.name,
        "architecture": [{"name": l.name, "class": l.__class__.__name__,
                          "params": int(l.count_params()) if l.built else None} for l in core.layers],
        "parameters": total,
        "trainable_parameters": trainable,
        "trainable_percent": 100.0 * trainable / max(total, 1),
        "base_checkpoint": ctx.config.model.checkpoint,
        **ctx.model_extra,
    }


def training_section(ctx) -> dict:
    cfg = ctx.config
    return {"epochs_requested": cfg.train.epochs, "epochs_run": len(next(iter(ctx.history.values()), [])),
            "batch_size": cfg.train.batch_size, "optimizer": cfg.train.optimizer,
            "learning_rate": cfg.train.learning_rate, "strategy": ctx.strategy_name,
            "replicas": int(getattr(ctx.strategy, "num_replicas_in_sync", 1)),
            "history": ctx.history, "timings": ctx.timings,
            "notes": [n for c in ctx.contributions.values() for n in c.notes],
            **ctx.training_extra}


def build_report(ctx) -> dict:
    cfg = ctx.config
    cdict = cfg.to_dict()
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    report = {
        "schema_version": SCHEMA_VERSION,
        "run": {"name": cfg.name, "created": now, "seed": cfg.seed, "config_hash": config_hash(cdict),
                "git_hash": git_hash(), "versions": versions(), "config": cdict,
                "intended_use": cfg.report.intended_use, "out_of_scope": cfg.report.out_of_scope,
                "description": cfg.report.description, "limitations": cfg.report.limitations,
                "license": cfg.report.license},
        "data": ctx.data.summary(),
        "model": model_section(ctx),
        "training": training_section(ctx),
    }
    for key in ("evaluation", "privacy", "fairness", "robustness", "explanations", "compression", "export"):
        report[key] = ctx.report.get(key)
    if report["privacy"] is None:  # a DP claim made by the trainer (federated client-level DP), not the concern
        report["privacy"] = ctx.privacy_claim
    for key, value in ctx.report.items():
        report.setdefault(key, value)
    protect_releases(ctx, report)  # under DP: keyed data fingerprints, training-split summary, coverage refreshed
    report["scorecard"] = {"per_example": _per_example(ctx, report)}
    return derive(_jsonable(report))


def _per_example(ctx, report):
    """Per-example scorecard inputs from the test predictions (None when there are none)."""
    from tfresp.report.scorecard import per_example_stats

    proba = ctx.predictions.get("test")
    test = getattr(ctx.data, "test", None)
    if proba is None or test is None or ctx.config.task != "classification" or proba.ndim != 2:
        return None
    threshold = (((report.get("evaluation") or {}).get("test")) or {}).get("threshold") or 0.5
    return per_example_stats(test.y, proba, getattr(test, "groups", None), threshold=threshold)


def _plots(ctx):
    from tfresp.report.plots import training_curves

    paths = {}
    p = training_curves(ctx.history, ctx.run_dir / "plots" / "training.png")
    if p:
        paths["training"] = "plots/training.png"
    return paths


def write_files(run_dir: Path, report: dict) -> None:
    """Write report.json / report.md / report.html. The derived parts (intervals, scorecard, gates, warnings)
    are recomputed first, so commands that add a section (``tfresp audit``, ``tfresp export``) keep them current."""
    from tfresp.report.markdown import render_markdown

    from tfresp.run.io import atomic_write  # atomic, never through a symlink planted in the run dir

    derive(report)
    atomic_write(run_dir / "report.json", json.dumps(report, indent=2, allow_nan=False))
    atomic_write(run_dir / "report.md", render_markdown(report))
    if report["run"]["config"].get("report", {}).get("html", True):
        try:
            from tfresp.report.html import render_html
        except ModuleNotFoundError as exc:
            if exc.name != "tfresp.report.html":
                raise
        else:
            atomic_write(run_dir / "report.html", render_html(report, run_dir))


def finalize_report(ctx) -> dict:
    run_dir = ctx.run_dir
    (run_dir / "config.yaml").write_text(ctx.config.to_yaml())
    ctx.data.preprocessor.save(run_dir / "preprocessing")
    plots = ctx.report.setdefault("plots", {})
    plots.update(_plots(ctx))
    report = build_report(ctx)
    from tfresp.run.relocate import locations
    from tfresp.report import manifest

    where = locations(ctx.config, ctx.target if ctx.target is not None else run_dir)
    if where is not None and isinstance(report.get("data"), dict):
        report["data"]["locations"] = where  # `tfresp verify` / `audit` / `explain` find the data after a move
    report["manifest"] = manifest.build(run_dir)  # every artifact's sha256 (`tfresp verify` hashes them again)
    write_files(run_dir, report)
    ctx.artifacts.update({"report_json": "report.json", "report_md": "report.md", "config": "config.yaml"})
    if (run_dir / "report.html").exists():
        ctx.artifacts["report_html"] = "report.html"
    return report
