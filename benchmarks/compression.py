"""Compression benchmark on Adult: one table of accuracy, group gap, size and CPU latency per variant.

Every row comes from a real ``tfresp.fit`` run (the same code path users get) and its
``report.json -> compression`` section:

* ``float``      TFLite float of the dense baseline (the reference for every ratio)
* ``int8``       post-training full-integer TFLite of the baseline (training rows calibrate)
* ``dynamic``    dynamic-range int8 TFLite of the baseline
* ``float16``    float16-weight TFLite of the baseline
* ``prune50`` / ``prune80``   TFLite float of models pruned to 50% / 80% during training
* ``prune80+int8``            the 80% model as int8 TFLite
* ``2:4``        TFLite float of the 2:4-structured model
* ``qat``        int8 TFLite of the quantization-aware-trained model
* ``student``    TFLite float of a narrow MLP distilled from the baseline

Group gap = fairlearn demographic-parity difference by ``sex`` on the variant's own test
predictions. Latency = per-example (batch 1) wall clock, p50 over ``--latency-runs`` calls,
1 interpreter thread, measured in this process; it is noisy on a shared machine, so compare
ratios measured in the same run.

Usage:
    .venv/bin/python benchmarks/compression.py                    # wide MLP [1024, 512], 6 epochs
    .venv/bin/python benchmarks/compression.py --hidden 64,32 --tag default
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tfresp  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


TWEETS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tweets" / "sentiment_tweets.csv.gz"


def base_config(args) -> dict:
    if args.task == "tweets":
        return {"name": "bench", "seed": args.seed,
                "data": {"source": str(TWEETS), "text": "text", "label": "sentiment", "max_rows": args.max_rows,
                         "max_length": 48, "split": {"test": 0.2, "validation": 0.1}},
                "model": {"kind": "bert", "bert": {"hidden": args.hidden[0], "layers": len(args.hidden),
                                                   "heads": 4}},
                "train": {"epochs": args.epochs, "batch_size": 64, "learning_rate": 1e-3},
                "export": {"saved_model": False, "tflite": []}, "report": {"html": False},
                "compression": {"latency_runs": args.latency_runs, "representative_rows": 100}}
    return {"name": "bench", "seed": args.seed,
            "data": {"source": "adult", "label": "income", "sensitive": ["sex", "race"],
                     "max_rows": args.max_rows, "split": {"test": "official", "validation": 0.1}},
            "model": {"kind": "mlp", "hidden": args.hidden},
            "train": {"epochs": args.epochs, "batch_size": 256, "learning_rate": 1e-3},
            "export": {"saved_model": False, "tflite": []}, "report": {"html": False},
            "compression": {"latency_runs": args.latency_runs, "representative_rows": 300}}


def fit(args, tmp: Path, name: str, compression: dict, tflite=()) -> dict:
    cfg = base_config(args)
    cfg["name"] = name.replace(":", "of").replace("+", "_")
    cfg["compression"].update(compression)
    cfg["export"]["tflite"] = list(tflite)
    t0 = time.perf_counter()
    r = tfresp.fit(cfg, out=tmp / cfg["name"], quiet=True)
    print(f"[bench] {name}: fit+audit {time.perf_counter() - t0:.1f}s, test accuracy "
          f"{r.report['evaluation']['test']['accuracy']:.4f}", flush=True)
    return r.report["compression"]


def row(name: str, v: dict, ref: dict, note: str = "") -> dict:
    return {"variant": name, "accuracy": v["accuracy"],
            "accuracy_drop_points": 100.0 * (ref["accuracy"] - v["accuracy"]),
            "group_gap_sex": v["group_gap"].get("sex"), "group_gap_race": v["group_gap"].get("race"),
            "bytes": v["bytes"], "gzip_bytes": v["gzip_bytes"], "bytes_ratio": v["bytes"] / ref["bytes"],
            "gzip_ratio": v["gzip_bytes"] / ref["gzip_bytes"], "latency_ms_p50": v["latency_ms_p50"],
            "latency_ms_p95": v["latency_ms_p95"], "speedup_vs_float": ref["latency_ms_p50"] / v["latency_ms_p50"],
            "parameters": v.get("parameters"), "sparsity": v.get("sparsity"), "note": note}


def markdown(table, meta) -> str:
    model = "tweets BERT" if meta["task"] == "tweets" else "Adult MLP"
    lines = [f"# Compression benchmark: {model} hidden={meta['hidden']}, {meta['epochs']} epochs",
             "", f"Measured {meta['date']} on {meta['cpu']} ({meta['cores']} cores, shared), "
                 f"TF {meta['tf']}; latency = batch-1 p50 over {meta['latency_runs']} calls, 1 thread; "
                 f"1-min load average at the end {meta['load_average_1m_at_end']:.1f}.", "",
             "| variant | accuracy | Δacc (pts) | DP gap sex | bytes | gzip | gzip × float | p50 ms | "
             "speed-up × float | sparsity |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        gap = "n/a" if r["group_gap_sex"] is None else f"{r['group_gap_sex']:.4f}"
        lines.append(f"| {r['variant']} | {r['accuracy']:.4f} | {r['accuracy_drop_points']:+.2f} | "
                     f"{gap} | {r['bytes']:,} | {r['gzip_bytes']:,} | {r['gzip_ratio']:.3f} | "
                     f"{r['latency_ms_p50']:.4f} | {r['speedup_vs_float']:.2f} | {r['sparsity']:.3f} |")
    lines += ["", "## Goals", ""]
    for g in meta["goals"]:
        lines.append(f"- {'PASS' if g['passed'] else 'FAIL'}: {g['goal']} (measured {g['measured']})")
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", default="1024,512")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--max-rows", type=int, default=None)
    p.add_argument("--latency-runs", type=int, default=500)
    p.add_argument("--student", default="64")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="wide")
    p.add_argument("--task", choices=["adult", "tweets"], default="adult",
                   help="tweets: a BERT (hidden=first --hidden value, layers=len(--hidden)) trained from scratch; "
                        "variants float/int8/dynamic/float16/pruned 50%%/80%%")
    args = p.parse_args(argv)
    args.hidden = [int(h) for h in args.hidden.split(",")]
    student = [int(h) for h in args.student.split(",")]
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="tfresp-bench-") as d:
        tmp = Path(d)
        if args.task == "tweets":
            base = fit(args, tmp, "baseline", {}, tflite=["int8", "dynamic", "float16"])
            p50 = fit(args, tmp, "prune50", {"prune": 0.5, "exclude": ["logits", "classifier*"]})
            p80 = fit(args, tmp, "prune80", {"prune": 0.8, "exclude": ["logits", "classifier*"]}, tflite=["int8"])
            s24 = qat = None
        else:
            base = fit(args, tmp, "baseline", {"distill": {"hidden": student, "temperature": 4.0, "alpha": 0.5}},
                       tflite=["int8", "dynamic", "float16"])
            p50 = fit(args, tmp, "prune50", {"prune": 0.5, "exclude": ["logits"]})
            p80 = fit(args, tmp, "prune80", {"prune": 0.8, "exclude": ["logits"]}, tflite=["int8"])
            s24 = fit(args, tmp, "2:4", {"structured": "2:4", "begin": 0.2})
            qat = fit(args, tmp, "qat", {"quantize": "qat"})
    ref = base["float"]
    table = [row("float", ref, ref, "dense baseline, TFLite float"),
             row("int8 (PTQ)", base["int8"], ref, "full-integer, training rows calibrate"),
             row("dynamic", base["dynamic"], ref, "int8 weights, float activations"),
             row("float16", base["float16"], ref, "float16 weights"),
             row("pruned 50%", p50["float"], ref, f"{p50['pruning']['method']}, TFLite float"),
             row("pruned 80%", p80["float"], ref, f"{p80['pruning']['method']}, TFLite float"),
             row("pruned 80% + int8", p80["int8"], ref, "pruned then full-integer")]
    if s24 is not None:
        table.append(row("2:4", s24["float"], ref, f"{s24['pruning']['method']} 2:4, TFLite float"))
    if qat is not None:
        table.append(row("QAT int8", qat["int8"], ref, "tfmot QAT -> int8 TFLite"))
    if "student" in base:
        stu = base["student"]
        stu_row = dict(stu)
        stu_row.update({k: stu["tflite_float"][k] for k in ("bytes", "gzip_bytes", "latency_ms_p50",
                                                            "latency_ms_p95", "accuracy")})
        table.append(row(f"student {student}", stu_row, ref, "distilled (T=4, alpha=0.5), TFLite float"))
    r80 = table[5]
    r8 = table[1]
    goals = [
        {"goal": "80% pruned <= 1 accuracy point drop", "measured": f"{r80['accuracy_drop_points']:+.2f} pts",
         "passed": r80["accuracy_drop_points"] <= 1.0},
        {"goal": "80% pruned gzip <= 0.35x float", "measured": f"{r80['gzip_ratio']:.3f}x",
         "passed": r80["gzip_ratio"] <= 0.35},
        {"goal": "int8 TFLite <= 0.28x bytes", "measured": f"{r8['bytes_ratio']:.3f}x",
         "passed": r8["bytes_ratio"] <= 0.28},
        {"goal": "int8 TFLite >= 1.5x faster than float TFLite", "measured": f"{r8['speedup_vs_float']:.2f}x",
         "passed": r8["speedup_vs_float"] >= 1.5},
    ]
    meta = {"hidden": args.hidden, "epochs": args.epochs, "max_rows": args.max_rows, "student": student,
            "latency_runs": args.latency_runs, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpu": _cpu(), "cores": os.cpu_count(), "tf": tf.__version__, "goals": goals,
            "task": args.task, "load_average_1m_at_end": os.getloadavg()[0],
            "structured_2_4_all_groups_ok": ((s24 or {}).get("structured_2_4") or {}).get("all_groups_ok"),
            "qat_unsupported_layers": ((qat or {}).get("qat") or {}).get("unsupported_layers"),
            "per_layer_sparsity": {"prune50": p50["per_layer_sparsity"], "prune80": p80["per_layer_sparsity"],
                                   "2:4": (s24 or {}).get("per_layer_sparsity")},
            "roundtrip": {k: base[k]["roundtrip"] for k in ("float", "int8", "dynamic", "float16")}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"compression_{args.tag}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "table": table}, indent=2))
    md = markdown(table, meta)
    stem.with_suffix(".md").write_text(md)
    print(md)
    return 0


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
