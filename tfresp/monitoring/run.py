"""``tfresp.monitor(run, batches, ...)``: score new batches with the served model and monitor each window."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import pandas as pd
from scipy import stats

from tfresp.errors import ConfigError, DataError
from tfresp.data.sources import as_category_strings
from tfresp.monitoring import drift as drift_mod
from tfresp.monitoring.output import MARKER
from tfresp.monitoring.profile import (build_reference, dp_vocab_columns, spec_columns, spec_kinds_and_vocab,
                                      vocabulary_provenance)
from tfresp.monitoring.serving import column_mapping, load_signature, score

MONITOR_SCHEMA = "1.0"


def _read_batch(item, index: int):
    if isinstance(item, pd.DataFrame):
        return f"batch[{index}] (DataFrame)", item.reset_index(drop=True)
    from tfresp.data.sources import load_file

    path = Path(item)
    if not path.is_file():
        raise DataError(f"`batches[{index}]`: not a regular file. Received: {str(item)!r}. Remedy: pass CSV, "
                        "Parquet or JSONL files (or DataFrames) with the run's raw columns")
    frames, _ = load_file(str(path), "auto")
    return str(path), frames["train"].reset_index(drop=True)


def _windows(batches: List[tuple], window: Optional[int]):
    if window is None:
        return [(name, df) for name, df in batches]
    both = pd.concat([df.assign(__source__=name) for name, df in batches], ignore_index=True)
    out = []
    for start in range(0, len(both), window):
        part = both.iloc[start:start + window]
        out.append((", ".join(dict.fromkeys(part["__source__"])), part.drop(columns="__source__")
                    .reset_index(drop=True)))
    return out


def wilson_ci(k: int, n: int, confidence: float = 0.95) -> list:
    """Wilson score interval of a proportion (scipy's ``binomtest(...).proportion_ci``)."""
    if n == 0:
        return [None, None]
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return [float(ci.low), float(ci.high)]


def window_performance(y: np.ndarray, proba: np.ndarray, class_id: np.ndarray, classes: List[str]) -> dict:
    from tfresp.evaluation.metrics import classification_metrics

    perf = classification_metrics(y, proba, classes, y_pred=class_id)
    perf.pop("per_class", None)
    perf["accuracy_ci"] = wilson_ci(int((y == class_id).sum()), len(y))
    return perf


def window_fairness(frame, y, proba, class_id, attributes: List[str], min_group_size: int, bootstrap: int,
                    seed: int) -> dict:
    from tfresp.fairness.metrics import group_report

    if proba.shape[1] != 2:
        return {}
    out = {}
    for attr in attributes:
        if attr not in frame.columns:
            continue
        groups = as_category_strings(frame[attr]).to_numpy()
        sec = group_report(y, (class_id == 1).astype(np.int64), proba[:, 1], groups, min_group_size=min_group_size,
                           bootstrap=bootstrap, seed=seed)
        out[attr] = {k: v for k, v in sec.items() if k != "by_group"} | {
            "by_group": {g: {m: v for m, v in d.items() if not m.endswith("_ci")} for g, d in
                         sec.get("by_group", {}).items()}}
    return out


def _ci_at(report: dict, metric: str):
    """The ``<metric>_ci`` pair next to a gate's metric (also under ``evaluation.test``), or None."""
    for path in (metric, f"evaluation.test.{metric}"):
        node = report
        parts = path.split(".")
        for i, part in enumerate(parts):
            key = part + "_ci" if i == len(parts) - 1 else part
            if not isinstance(node, dict) or key not in node:
                node = None
                break
            node = node[key]
        if isinstance(node, list) and len(node) == 2 and all(isinstance(v, (int, float)) for v in node):
            return [float(node[0]), float(node[1])]
    return None


def window_gates(gate_texts: List[str], window_report: dict, run_report: dict, labelled: bool,
                 mode: str = "ci") -> dict:
    """The run's gates on one window.

    ``mode="ci"`` (default): a gate *fails* only when the whole 95% CI of its metric lies on the failing side (a
    window of a few thousand rows is noisy: the point estimate alone raises false alarms); a failing point estimate
    whose CI still reaches the threshold is a *warning*. ``mode="point"``: the point estimate decides, as at
    release. A gate on a release-time number (privacy, compression) is not re-checked per window.
    """
    from tfresp.report.gates import evaluate_gates, lookup

    results = []
    for r in evaluate_gates(gate_texts, window_report):
        if r["value"] is None:
            if lookup(run_report, r["metric"]) is not None and not r["metric"].startswith(("fairness.",
                                                                                             "evaluation.")):
                r.update(status="release-time", passed=True,
                         reason="a release-time number (not measured on a window); see report.json")
            elif not labelled:
                r.update(status="not-evaluated", passed=True, reason="this window has no labels")
            else:
                r["status"] = "failed"
        elif r["passed"]:
            r["status"] = "passed"
        else:
            ci = _ci_at(window_report, r["metric"])
            r["ci"] = ci
            if mode == "ci" and ci is not None:
                lo, hi = ci
                whole = lo > r["threshold"] if r["op"] in ("<=", "<") else (
                    hi < r["threshold"] if r["op"] in (">=", ">") else False)
                r["status"] = "failed" if whole else "warning"
                if not whole:
                    r["reason"] += f"; its 95% CI [{lo:.4g}, {hi:.4g}] still reaches {r['threshold']:g}"
            else:
                r["status"] = "failed"
        results.append(r)
    return {"mode": mode, "results": results, "failed": [r["gate"] for r in results if r["status"] == "failed"],
            "warnings": [r["gate"] for r in results if r["status"] == "warning"]}


def monitor(run_dir, batches: Sequence[Union[str, Path, pd.DataFrame]], *, labels: Optional[str] = None,
            window: Optional[int] = None, out=None, reference=None, alpha: float = 0.01, min_psi: float = 0.1,
            gates: Sequence[str] = (), gate_mode: str = "ci", bootstrap: int = 200, seed: int = 0,
            write: bool = True) -> dict:
    """Monitor a released run on new batches.

    Args:
        run_dir: a finished tfresp run (with ``saved_model/`` and ``monitor/reference.json``).
        batches: files (CSV/Parquet/JSONL, optionally .gz) or DataFrames with the run's raw columns.
        labels: the label column, when the batches carry ground truth (enables performance, fairness and gates).
        window: rows per window (default: one window per batch).
        out: where ``monitor.json`` / ``monitor.html`` go (default ``RUN/monitor``).
        reference: a public reference file/DataFrame to compare against instead of the run's stored profile.
        alpha: false-discovery rate for the Benjamini–Hochberg-adjusted drift tests of one window.
        min_psi: effect-size floor (population stability index) below which a column never alarms.
        gates: extra gate strings checked on every window (besides the run's own).
        gate_mode: ``ci`` (a gate fails when its metric's whole 95% CI is on the failing side; else a warning) or
            ``point`` (the point estimate decides).

    Returns:
        The ``monitor.json`` dict. ``summary.gates_failed`` is non-zero when any window failed a gate.
    """
    run_dir = Path(run_dir)
    report_path = run_dir / "report.json"
    if not report_path.is_file():
        raise ConfigError([("run", str(run_dir), "is not a finished tfresp run directory (no report.json)")])
    run_report = json.loads(report_path.read_text())
    if gate_mode not in ("ci", "point"):
        raise ConfigError([("gate_mode", gate_mode, "one of 'ci', 'point'")])
    if window is not None and window < 1:
        raise ConfigError([("--window", window, "must be a positive number of rows")])
    signature, specs = load_signature(run_dir)
    mapping = column_mapping(run_dir)
    classes = [str(c) for c in (run_report.get("data", {}).get("classes") or [])]
    ref = _reference(run_dir, reference, signature, specs, mapping, run_report, labels, classes)
    classes = classes or ref["classes"]
    sensitive = list(ref.get("sensitive", {}))
    loaded = [_read_batch(b, i) for i, b in enumerate(batches)]
    if not loaded:
        raise ConfigError([("batches", [], "give at least one batch to monitor")])
    problems = []
    if labels is not None:
        for name, df in loaded:
            if labels not in df.columns:
                problems.append(f"{name} has no label column {labels!r}")
    if problems:
        raise DataError("`--labels`: " + "; ".join(problems) + ". Remedy: name the label column the batches carry, "
                        "or leave --labels out")
    gate_texts = [r["gate"] for r in (run_report.get("gates") or {}).get("results", [])
                  if not str(r.get("metric", "")).startswith("scorecard.")] + list(gates)
    fair_cfg = run_report.get("fairness") or {}
    min_group = int((fair_cfg.get("config") or {}).get("min_group_size", 30)) if isinstance(fair_cfg, dict) else 30
    t0 = time.perf_counter()
    windows, rows = [], 0
    for i, (source, frame) in enumerate(_windows(loaded, window)):
        proba, class_id = score(signature, specs, mapping, frame, f"window {i}")
        rows += len(frame)
        w = {"index": i, "source": source, "rows": int(len(frame)),
             "drift": drift_mod.window_drift(ref, frame, proba, class_id, alpha=alpha, min_psi=min_psi)}
        w["alarms"] = w["drift"].pop("alarms")
        labelled = labels is not None
        window_report = {}
        if labelled:
            y_raw = frame[labels].astype(str)
            unknown = sorted(set(y_raw) - set(classes))
            if unknown:
                raise DataError(f"`--labels`: window {i} has labels {unknown[:5]} the run never trained on. "
                                f"Received: classes {classes}. Remedy: map the labels to the run's classes")
            y = y_raw.map({c: k for k, c in enumerate(classes)}).to_numpy(np.int64)
            w["performance"] = window_performance(y, proba, class_id, classes)
            w["fairness"] = window_fairness(frame, y, proba, class_id, sensitive, min_group, bootstrap, seed + i)
            window_report = {"evaluation": {"test": w["performance"]}, "fairness": w["fairness"]}
        w["gates"] = window_gates(gate_texts, window_report, run_report, labelled, gate_mode)
        for g in w["gates"]["failed"]:
            w["alarms"].append({"type": "gate", "gate": g})
        for g in w["gates"]["warnings"]:
            w["alarms"].append({"type": "gate_warning", "gate": g})
        windows.append(w)
    seconds = time.perf_counter() - t0
    result = {
        "schema_version": MONITOR_SCHEMA,
        "generator": MARKER,
        "run": {"path": str(run_dir), "id": (run_report.get("run") or {}).get("id"),
                "name": (run_report.get("run") or {}).get("name")},
        "reference": {k: ref[k] for k in ("source", "rows")},
        "engines": {"drift": "scipy.stats.chi2_contingency (two-sample chi-square on the reference's bins) + PSI",
                    "multiple_testing": "Benjamini-Hochberg (scipy.stats.false_discovery_control), per window",
                    "performance": "scikit-learn metrics; accuracy CI: Wilson (scipy.stats.binomtest)",
                    "fairness": "fairlearn MetricFrame via tfresp.fairness.metrics.group_report (bootstrap CIs)",
                    "scoring": "the run's exported SavedModel (serving_default on raw columns)"},
        "settings": {"alpha": alpha, "min_psi": min_psi, "window": window, "labels": labels,
                     "gates": gate_texts, "gate_mode": gate_mode},
        "windows": windows,
        "summary": {"windows": len(windows), "rows": rows,
                    "drift_alarms": sum(a["type"] == "drift" for w in windows for a in w["alarms"]),
                    "windows_with_drift": sum(any(a["type"] == "drift" for a in w["alarms"]) for w in windows),
                    "unseen_category_alarms": sum(a["type"] == "unseen_category" for w in windows
                                                  for a in w["alarms"]),
                    "gates_failed": sum(len(w["gates"]["failed"]) for w in windows),
                    "gate_warnings": sum(len(w["gates"]["warnings"]) for w in windows),
                    "first_gate_failure_window": next((w["index"] for w in windows if w["gates"]["failed"]), None),
                    "first_drift_window": next((w["index"] for w in windows
                                                if any(a["type"] == "drift" for a in w["alarms"])), None)},
        "throughput": {"rows": rows, "seconds": seconds, "rows_per_second": rows / seconds if seconds else None},
    }
    if write:
        from tfresp.monitoring.output import write_outputs

        result["files"] = write_outputs(result, Path(out) if out is not None else run_dir / "monitor")
    return result


def _reference(run_dir, reference, signature, specs, mapping, run_report, labels, classes) -> dict:
    if reference is None:
        path = run_dir / "monitor" / "reference.json"
        if not path.is_file():
            raise ConfigError([("run", str(run_dir), "has no monitor/reference.json (runs before tfresp 0.2, or "
                                                     "non-tabular runs); pass --reference FILE with public reference "
                                                     "rows")])
        return json.loads(path.read_text())
    name, frame = _read_batch(reference, 0)
    data = run_report.get("data", {})
    features = [c for c in (data.get("features") or []) if c in frame.columns] or \
        [mapping.get(k, k) for k in specs]
    kinds, vocab = spec_kinds_and_vocab(run_dir, features, frame)
    proba, class_id = score(signature, specs, mapping, frame, "--reference")
    sensitive = [a for a in (data.get("sensitive") or []) if a in frame.columns]
    return build_reference(frame, features=features, kinds=kinds, sensitive=sensitive, label=labels,
                           classes=classes or [str(i) for i in range(proba.shape[1])], proba=proba,
                           class_id=class_id, source=f"user-declared reference {name} ({len(frame)} rows)",
                           vocab=vocab, folded=dp_vocab_columns(spec_columns(run_dir)),
                           vocabulary_source=vocabulary_provenance(spec_columns(run_dir)))
