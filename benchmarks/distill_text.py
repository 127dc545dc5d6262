"""Distillation benchmark: fine-tuned MiniLM (6 layers) -> 2-layer BERT student on tweets.

One ``tfresp.fit`` run (the path users get): MiniLM-L6-H384 fine-tuned on a tweet subset, then
``compression.distill`` trains the 2-layer student (layers [0, 5] of the teacher, DistilBERT's rule)
on the teacher's soft targets mixed with the hard labels, and exports it (``saved_model_student/``).
With ``--compare``, the finished run's teacher is distilled again into a student initialized from
layers [0, 1] (bottom layers kept, "top-layer dropping", Sajjad et al., 2023), same settings.

Printed and written to ``benchmarks/results/distill_text.json``: test accuracy of teacher and students
(the test split the run serves: report.evaluation.test for the teacher), parameters, weight bytes,
SavedModel bytes, CPU latency at batch 1 and batch 32 (median of rounds that alternate teacher and
student, in this process; the machine is shared, so compare the ratios), fit times.

Usage (CPU, ~15-30 min on 2 shared cores):
    nice -n 10 .venv/bin/python benchmarks/distill_text.py > /tmp/distill_text.log 2>&1 &
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

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TWEETS = SHARED / "data" / "tweets" / "sentiment_tweets.csv.gz"
MINILM = SHARED / "models" / "minilm-l6-h384-uncased"
RESULTS = Path(__file__).resolve().parent / "results"


def config(args) -> dict:
    return {"name": "distill_text", "seed": args.seed,
            "data": {"source": str(TWEETS), "text": "text", "label": "sentiment", "max_rows": args.rows,
                     "max_length": args.max_length, "split": {"test": 0.2, "validation": 0.0}},
            "model": {"kind": "checkpoint", "checkpoint": str(MINILM), "dropout": 0.1},
            "train": {"epochs": args.epochs, "batch_size": 32, "learning_rate": 5e-5, "optimizer": "adamw",
                      "warmup": 0.1},
            "compression": {"latency_runs": args.latency_runs,
                            "distill": {"layers": 2, "temperature": args.temperature, "alpha": args.alpha,
                                        "learning_rate": args.student_lr, "epochs": args.student_epochs,
                                        "export": True}},
            "export": {"saved_model": True, "tflite": []}, "report": {"html": False}}


def row(name: str, s: dict, saved_model_bytes=None) -> dict:
    lat = s["latency"]
    return {"model": name, "accuracy": s["accuracy"], "parameters": s["parameters"],
            "weights_bytes": s["weights_bytes"], "saved_model_bytes": saved_model_bytes,
            "latency_batch_1_ms": lat[name if name == "teacher" else "student"]["batch_1_ms"],
            "latency_batch_32_ms": lat[name if name == "teacher" else "student"]["batch_32_ms"],
            "group_gap": s.get("group_gap")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--max-length", type=int, default=48)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--student-epochs", type=int, default=2)
    p.add_argument("--student-lr", type=float, default=1e-4)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--latency-runs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare", action=argparse.BooleanOptionalAction, default=True,
                   help="also distill a student from teacher layers [0, 1]")
    p.add_argument("--out", type=Path, default=RESULTS / "distill_text.json")
    args = p.parse_args(argv)
    cfg = config(args)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        r = tfresp.fit(cfg, out=Path(tmp) / "run", quiet=True)
        wall = time.perf_counter() - t0
        s = r.report["compression"]["student"]
        teacher = {**s["teacher"], "latency": s["latency"]}
        rows = [row("teacher", teacher, r.report["export"]["saved_model"]["bytes"]),
                {**row("student [0, 5]", s, s["saved_model"]["bytes"]), "fit_seconds": s["fit_seconds"]}]
        students = {"[0, 5]": s}
        if args.compare:
            from tfresp.compression.config import DistillConfig
            from tfresp.compression.student import distill_text

            d = DistillConfig(**{**cfg["compression"]["distill"], "teacher_layers": [0, 1], "export": False})
            alt = distill_text(r.context, d)
            students["[0, 1]"] = alt
            rows.append({**row("student [0, 1]", alt), "fit_seconds": alt["fit_seconds"]})
    out = {"command": "python benchmarks/distill_text.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "config": cfg, "machine": {"cpus": os.cpu_count(), "note": "2 cores shared with other jobs (nice 10)"},
           "teacher_fit_seconds": r.context.timings.get("fit_seconds"), "wall_seconds": time.perf_counter() - t0,
           "fit_and_audit_seconds": wall, "evaluation": r.report["evaluation"]["test"].get("accuracy"),
           "text_baseline": r.report["evaluation"].get("baseline"), "table": rows, "students": students}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=str))
    print(f"{'model':16s} {'acc':>6s} {'params':>10s} {'weights MB':>10s} {'SavedModel MB':>13s} "
          f"{'b1 ms':>7s} {'b32 ms':>8s}")
    for x in rows:
        sm = f"{x['saved_model_bytes'] / 1e6:13.1f}" if x["saved_model_bytes"] else f"{'-':>13s}"
        print(f"{x['model']:16s} {x['accuracy']:6.3f} {x['parameters']:10d} {x['weights_bytes'] / 1e6:10.1f} {sm} "
              f"{x['latency_batch_1_ms']:7.2f} {x['latency_batch_32_ms']:8.1f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
