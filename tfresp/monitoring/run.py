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
    """``(frame of every batch, [(source, start, stop), ...])``: one window per batch, or ``window`` rows each."""
    frame = pd.concat([df for _, df in batches], ignore_index=True) if len(batches) > 1 else batches[0][1]
    ends = np.cumsum([len(df) for _, df in batches])
    starts = ends - np.array([len(df) for _, df in batches])
    if window is None:
        return frame, [(name, int(a), int(b)) for (name, _), a, b in zip(batches, starts, ends)]
    spans = []
    for start in range(0, len(frame), window):
        stop = min(start + window, len(frame))
        names = [name for (name, _), a, b in zip(batches, starts, ends) if a < stop and b > start]
        spans.append((", ".join(dict.fromkeys(names)), start, stop))
    return frame, spans


def wilson_ci(k: int, n: int, confidence: float = 0.95) -> list:
    """Wilson score interval of a proportion, in closed form (equal to scipy's
    ``binomtest(k, n).proportion_ci(method="wilson")``; the tests check it)."""
    if n == 0:
        return [None, None]
    from scipy.special import ndtri

    z = float(ndtri(0.5 + confidence / 2))
    p = k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [float(max(center - half, 0.0)), float(min(center + half, 1.0))]


def window_performance(y: np.ndarray, proba: np.ndarray, class_id: np.ndarray, classes: List[str]) -> dict:
    """The window's classification metrics (those of :func:`tfresp.evaluation.metrics.classification_metrics`,
    checked against it by the tests); binary windows are computed from the confusion counts directly."""
    if proba.shape[1] != 2:
        from tfresp.evaluation.metrics import classification_metrics

        perf = classification_metrics(y, proba, classes, y_pred=class_id)
        perf.pop("per_class", None)
    else:
        perf = _binary_metrics(y, proba, class_id)
    perf["accuracy_ci"] = wilson_ci(int((y == class_id).sum()), len(y))
    return perf


def _binary_metrics(y: np.ndarray, proba: np.ndarray, pred: np.ndarray) -> dict:
    n = len(y)
    cm = np.bincount(y * 2 + pred, minlength=4)[:4].reshape(2, 2)
    tn, fp, fn, tp = (int(v) for v in cm.ravel())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    rec = [r for r in (tn / (tn + fp) if tn + fp else None, recall if tp + fn else None) if r is not None]
    out = {"rows": int(n), "accuracy": (tp + tn) / n if n else 0.0, "precision": float(precision),
           "recall": float(recall), "f1": float(f1), "balanced_accuracy": float(np.mean(rec)) if rec else 0.0}
    pos = y == 1
    if 0 < pos.sum() < n:  # ROC-AUC = Mann-Whitney U / (n1 n0), ties counted half (average ranks)
        ranks = stats.rankdata(proba[:, 1])
        n1 = int(pos.sum())
        out["roc_auc"] = float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * (n - n1)))
    else:
        out["roc_auc"] = None
    p = np.clip(proba, 1e-7, 1.0)
    out["log_loss"] = float(-np.mean(np.log(p[np.arange(n), y]))) if n else 0.0
    out["confusion_matrix"] = cm.tolist()
    out["threshold"] = 0.5
    return out


def window_fairness(frame, y, proba, class_id, attributes: List[str], min_group_size: int, bootstrap: int,
                    seed: int) -> dict:
    """Per-attribute group metrics and gaps with bootstrap CIs, as :func:`tfresp.fairness.metrics.group_report`
    computes them (same seeded resamples, same bias-corrected intervals; the tests check both agree), from the
    confusion counts of all resamples at once instead of one fairlearn ``MetricFrame`` per window."""
    if proba.shape[1] != 2:
        return {}
    out = {}
    for attr in attributes:
        if isinstance(frame, dict):  # {attribute: (integer codes of the window, their labels)}, encoded once
            if attr not in frame:
                continue
            groups = frame[attr]
        elif attr not in frame.columns:
            continue
        else:
            groups = as_category_strings(frame[attr]).to_numpy()
        out[attr] = fast_group_report(y, (class_id == 1).astype(np.int64), proba[:, 1], groups,
                                      min_group_size=min_group_size, bootstrap=bootstrap, seed=seed)
    return out


def fast_group_report(y, pred, prob, groups, *, min_group_size: int = 30, bootstrap: int = 200,
                      confidence: float = 0.95, seed: int = 0) -> dict:
    """``groups``: a label per row, or ``(integer codes, labels)`` (the labels of the codes)."""
    from tfresp.fairness.metrics import ALL_METRICS, BOOTSTRAP_METHOD, _num, bootstrap_rates, gap_stats, group_rates

    y, pred = np.asarray(y).astype(np.int64), np.asarray(pred).astype(np.int64)
    prob = np.asarray(prob, np.float64)
    if isinstance(groups, tuple):
        codes, labels = groups
    else:
        codes, labels = pd.factorize(pd.Series(np.asarray(groups).astype(str)), sort=False)
    labels = [str(v) for v in labels]
    counts = np.bincount(codes, minlength=len(labels))
    present = sorted((labels[c], int(counts[c]), c) for c in np.flatnonzero(counts))
    sizes = {g: n for g, n, _ in present}
    suppressed = {g: n for g, n in sizes.items() if n < min_group_size}
    big = [(g, c) for g, n, c in present if n >= min_group_size]
    names = [g for g, _ in big]
    lookup = np.full(len(labels), -1, np.int64)
    lookup[[c for _, c in big]] = np.arange(len(big))
    gall = lookup[codes]
    kept = gall >= 0
    y, pred, prob, gidx = y[kept], pred[kept], prob[kept], gall[kept]
    section = {"group_sizes": sizes, "suppressed": suppressed, "min_group_size": int(min_group_size),
               "groups": names, "rows": int(len(y)),
               "disparate_impact_reference": "min / max selection rate across groups"}
    if not names:
        section["note"] = "every group is below min_group_size; nothing reported"
        return section
    point = group_rates(y, pred, prob, gidx, len(names))
    by_group = {g: {"count": int(point["count"][0, j]), **{m: _num(point[m][0, j]) for m in ALL_METRICS}}
                for j, g in enumerate(names)}
    gaps = {}
    if len(names) >= 2:
        gaps = {k: _num(v[0]) for k, v in gap_stats(point).items()}
        section.update(gaps)
    else:
        section["note"] = "fewer than two groups at or above min_group_size; gaps not defined"
    if bootstrap and len(y) > 0:
        rates = bootstrap_rates(y, pred, prob, gidx, len(names), bootstrap, seed)  # group_report's engine
        cols, ests, keys = [], [], []
        for m in ALL_METRICS:
            for j, g in enumerate(names):
                cols.append(rates[m][:, j]), ests.append(by_group[g][m]), keys.append((g, m))
        if gaps:
            for k, arr in gap_stats(rates).items():
                cols.append(arr), ests.append(section.get(k)), keys.append((None, k))
        lo, hi, widened = bc_intervals(np.stack(cols, axis=1), ests, confidence)
        for (g, m), a, b in zip(keys, lo, hi):
            ci = [_num(a) if a is not None else None, _num(b) if b is not None else None]
            if g is None:
                section[f"{m}_ci"] = ci
            else:
                by_group[g][f"{m}_ci"] = ci
        section["bootstrap"] = {"resamples": int(bootstrap), "confidence": float(confidence), "seed": int(seed),
                                "method": BOOTSTRAP_METHOD,
                                "ci_widened": int(widened)}
    section["by_group"] = by_group
    return section


def bc_intervals(samples: np.ndarray, estimates, confidence: float):
    """:func:`tfresp.fairness.metrics.bc_interval` for every column of ``samples`` ``[B, K]`` at once
    (columns with a NaN resample, rare, take the one-column path)."""
    from scipy.stats import norm

    from tfresp.fairness.metrics import bc_interval

    B, K = samples.shape
    est = np.array([np.nan if e is None else float(e) for e in estimates], np.float64)
    lows, highs = [None] * K, [None] * K
    widened = 0
    full = np.isfinite(samples).all(axis=0) & np.isfinite(est)
    for j in np.flatnonzero(~full):
        lo, hi, w = bc_interval(samples[:, j], estimates[j], confidence)
        lows[j], highs[j], widened = lo, hi, widened + int(w)
    cols = np.flatnonzero(full)
    if len(cols):
        s, e = samples[:, cols], est[cols]
        below = ((s < e).sum(axis=0) + 0.5 * (s == e).sum(axis=0)) / B
        below = np.clip(below, 0.5 / B, 1 - 0.5 / B)
        za = norm.ppf([(1 - confidence) / 2, (1 + confidence) / 2])
        levels = norm.cdf(2 * norm.ppf(below)[:, None] + za[None, :])  # [k, 2]
        srt = np.sort(s, axis=0)
        pos = levels * (B - 1)  # numpy's default ("linear") quantile
        lo_i = np.clip(np.floor(pos).astype(np.int64), 0, B - 1)
        hi_i = np.clip(lo_i + 1, 0, B - 1)
        t = pos - lo_i
        k = np.arange(len(cols))[:, None]
        a, b = srt[lo_i, k], srt[hi_i, k]
        q = np.where(t >= 0.5, b - (b - a) * (1 - t), a + (b - a) * t)
        for n_, j in enumerate(cols):
            lo, hi = float(q[n_, 0]), float(q[n_, 1])
            widened += int(e[n_] < lo or e[n_] > hi)
            lows[j], highs[j] = min(lo, float(e[n_])), max(hi, float(e[n_]))
    return lows, highs, widened


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
    if labels is not None:
        import tfresp.fairness.metrics  # noqa: F401  (start-up, outside the timed loop; fairlearn stays unloaded)
        import tfresp.report.gates  # noqa: F401
    t0, c0 = time.perf_counter(), time.process_time()
    frame_all, spans = _windows(loaded, window)
    # everything row-wise is done once for the whole batch; each window then slices and counts
    proba_all, class_all = score(signature, specs, mapping, frame_all, "batches", batch=16384)
    coded = drift_mod.encode_columns(ref, frame_all)
    labelled = labels is not None
    if labelled:
        y_raw = frame_all[labels].astype(str)
        codes, uniq = pd.factorize(y_raw, sort=False)
        index = {c: k for k, c in enumerate(classes)}
        y_all = np.array([index.get(u, -1) for u in uniq], np.int64)[codes]
        sens_all = {a: pd.factorize(as_category_strings(frame_all[a]), sort=False) for a in sensitive
                    if a in frame_all.columns}
    windows, rows = [], 0
    for i, (source, start, stop) in enumerate(spans):
        sl = slice(start, stop)
        proba, class_id = proba_all[sl], class_all[sl]
        rows += stop - start
        w = {"index": i, "source": source, "rows": int(stop - start),
             "drift": drift_mod.coded_window_drift(ref, coded, sl, stop - start, proba, class_id, alpha=alpha,
                                                   min_psi=min_psi)}
        w["alarms"] = w["drift"].pop("alarms")
        window_report = {}
        if labelled:
            y = y_all[sl]
            if (y < 0).any():
                unknown = sorted(set(y_raw.iloc[start:stop][y < 0]))
                raise DataError(f"`--labels`: window {i} has labels {unknown[:5]} the run never trained on. "
                                f"Received: classes {classes}. Remedy: map the labels to the run's classes")
            w["performance"] = window_performance(y, proba, class_id, classes)
            w["fairness"] = window_fairness({a: (c[sl], u) for a, (c, u) in sens_all.items()}, y, proba,
                                            class_id, sensitive, min_group, bootstrap, seed + i)
            window_report = {"evaluation": {"test": w["performance"]}, "fairness": w["fairness"]}
        w["gates"] = window_gates(gate_texts, window_report, run_report, labelled, gate_mode)
        for g in w["gates"]["failed"]:
            w["alarms"].append({"type": "gate", "gate": g})
        for g in w["gates"]["warnings"]:
            w["alarms"].append({"type": "gate_warning", "gate": g})
        windows.append(w)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
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
        "throughput": {"rows": rows, "seconds": seconds, "rows_per_second": rows / seconds if seconds else None,
                       "cpu_seconds": cpu, "rows_per_cpu_second": rows / cpu if cpu else None},
    }
    if write:
        from tfresp.monitoring.output import write_outputs

        result["files"] = write_outputs(result, Path(out) if out is not None else run_dir / "monitor")
    return result


def _reference(run_dir, reference, signature, specs, mapping, run_report, labels, classes) -> dict:
    if reference is None:
        path = run_dir / "monitor" / "reference.json"
        if not path.is_file() and str(run_report.get("schema_version", "")).startswith("sites-"):
            raise ConfigError([("--reference", None, "a sites run (federated.sites) has no stored reference "
                                "profile: it would be computed from training rows, which stay at the sites. "
                                "Remedy: pass --reference FILE with public reference rows (the raw columns)")])
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
