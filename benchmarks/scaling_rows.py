"""Memory and time against the number of rows: the DP quickstart on Adult resampled to N rows.

For each N (default 50k / 200k / 800k) the Adult census rows (official train + test, 15 columns) are resampled
with replacement (seeded) to N rows and written to a CSV file; the DP quickstart config
(``configs/quickstart.yaml``: DP-SGD at epsilon 3, the fairness audit with 200 bootstrap resamples and the
threshold mitigation, pruning, SavedModel + TFLite export) then runs on it in a fresh process with a held-out
test fraction of 0.2. Each run records:

* ``wall_seconds`` and ``peak_rss_mb`` of the whole child process (the kernel's high-water mark of resident
  memory, ``VmHWM``);
* per phase (reading the file, the data checks, the split, the DP preprocessing statistics, encoding, the
  tf.data pipeline, training, prediction, each audit, export, the report): wall seconds, the resident memory
  at its end and its own peak. Phases nest (``prepare`` holds ``read``, ``checks``, ...). The peak of a phase
  is exact: ``/proc/self/clear_refs`` resets the high-water mark at each phase boundary and every open phase
  folds in the mark read there;
* the test accuracy and epsilon of the run, so a change that saves memory can be seen not to change them.

``--tree PATH`` runs the children on another checkout's package (e.g. the main branch, for a before/after
table measured the same way); ``--rows 10000000`` is the 10M-row run (many minutes on 2 cores).

The 10M-row run is its own invocation (1 epoch: ~27k DP steps on 2 cores) whose file joins the table:

Usage:
    .venv/bin/python benchmarks/scaling_rows.py --rows 10000000 --epochs 1 --name scaling_rows_10m --data-dir /tmp/x
    .venv/bin/python benchmarks/scaling_rows.py --include scaling_rows_10m --data-dir /tmp/x   # 50k, 200k, 800k
    .venv/bin/python benchmarks/scaling_rows.py --rows 50000 800000 --tree ../main --name scaling_rows_main
Writes benchmarks/results/scaling_rows.json (or ``--name``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, write_result  # noqa: E402

MARK = "@@SCALING_ROWS@@"


# ------------------------------------------------------------------------------------------ child ----
def _hwm_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


class Phases:
    """Nested phase timer with exact per-phase peak resident memory."""

    def __init__(self):
        self.open = []  # [name, t0, peak_kb]
        self.done = []
        self.peak_kb = _hwm_kb()
        _reset_hwm()

    def _fold(self):
        hwm = _hwm_kb()
        self.peak_kb = max(self.peak_kb, hwm)
        for ph in self.open:
            ph[2] = max(ph[2], hwm)
        _reset_hwm()

    def wrap(self, name, fn):
        def wrapped(*a, **kw):
            self._fold()
            self.open.append([name, time.perf_counter(), 0])
            try:
                return fn(*a, **kw)
            finally:
                self._fold()
                ph = self.open.pop()
                self.done.append({"phase": name, "depth": len(self.open), "seconds": round(time.perf_counter() - ph[1], 3),
                                  "peak_rss_mb": round(ph[2] / 1024, 1), "rss_after_mb": round(_rss_kb() / 1024, 1)})
        return wrapped

    def patch(self, owner, attr, name=None):
        setattr(owner, attr, self.wrap(name or attr, getattr(owner, attr)))


def child(args) -> None:
    sys.path.insert(0, args.tree)  # the package under test (this checkout or another branch's)
    t0 = time.perf_counter()
    phases = Phases()
    import tfresp  # noqa: F401
    from tfresp.run import builder
    from tfresp.data import dataset, dp_tabular, preprocess
    from tfresp.export import saved_model, tflite
    from tfresp.monitoring import profile
    from tfresp.report import writer

    phases.patch(builder, "prepare")
    phases.patch(dataset, "load_source", "read")
    phases.patch(dataset, "_check_frames", "checks")
    phases.patch(dataset, "_split", "split")
    phases.patch(dp_tabular, "fit_dp", "dp_statistics")
    phases.patch(preprocess.TabularPreprocessor, "transform_frame", "encode")
    if hasattr(preprocess.TabularPreprocessor, "transform_compact"):  # the training split, kept compact
        phases.patch(preprocess.TabularPreprocessor, "transform_compact", "encode_compact")
    phases.patch(builder, "train")
    phases.patch(builder, "_train_dataset", "train_dataset")
    from tfresp.run.context import RunContext

    phases.patch(RunContext, "predict_splits", "predict")
    phases.patch(builder, "post_fit")
    phases.patch(builder, "audit")
    phases.patch(saved_model, "export_saved_model", "export_saved_model")
    phases.patch(tflite, "export_tflite", "export_tflite")
    phases.patch(profile, "write_reference", "monitor_reference")
    phases.patch(writer, "finalize_report", "report")
    from tfresp import concerns

    for concern in concerns.registered():  # each concern's audit on its own
        cls = type(concern)
        if "audit" in vars(cls):
            phases.patch(cls, "audit", f"audit_{concern.config_key}")
    import_seconds = time.perf_counter() - t0
    cfg = json.loads(args.config)
    result = tfresp.fit(cfg, out=args.out, quiet=True, overwrite=True)
    phases._fold()
    rep = result.report
    timings = result.context.timings
    print(MARK + json.dumps({
        "child_seconds": time.perf_counter() - t0, "import_seconds": import_seconds,
        "peak_rss_mb": round(phases.peak_kb / 1024, 1), "phases": phases.done,
        "audit_seconds": {k: round(v, 3) for k, v in timings.items() if k.startswith("audit_")},
        "splits": {k: v.get("rows") for k, v in rep["data"]["splits"].items()},
        "accuracy": result.metrics.get("accuracy"), "raw_accuracy": (result.metrics.get("raw_model") or {}).get("accuracy"),
        "epsilon": (rep.get("privacy") or {}).get("epsilon")}))


# ----------------------------------------------------------------------------------------- parent ----
def make_csv(rows: int, path: Path, seed: int = 0) -> None:
    """Adult (official train + test) resampled with replacement to ``rows`` rows, written in chunks."""
    import numpy as np
    import pandas as pd

    from tfresp.data.sources import load_adult

    frames = load_adult()[0]
    full = pd.concat([frames["train"], frames["test"]], ignore_index=True)
    rng = np.random.default_rng(seed)
    chunk = 500_000
    with open(path, "w") as fh:
        for start in range(0, rows, chunk):
            idx = rng.integers(0, len(full), size=min(chunk, rows - start))
            full.iloc[idx].to_csv(fh, index=False, header=start == 0)


def config(path: Path, epochs: int) -> dict:
    import yaml

    cfg = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    cfg["data"]["source"] = str(path)
    cfg["data"]["split"] = {"test": 0.2, "validation": 0.1}
    cfg["train"]["epochs"] = epochs
    return cfg


def run_one(rows: int, tree: str, data_dir: Path, epochs: int, timeout: float) -> dict:
    path = data_dir / f"adult_{rows}.csv"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        make_csv(rows, tmp)
        tmp.rename(path)
    cfg = config(path, epochs)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", PYTHONPATH=tree)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--child", "--tree", tree, "--config", json.dumps(cfg),
                               "--out", str(Path(out) / "run")], env=env, capture_output=True, text=True,
                              timeout=timeout)
        wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        return {"rows": rows, "error": (proc.stderr or proc.stdout)[-2000:], "wall_seconds": wall}
    res = json.loads(lines[0][len(MARK):])
    return {"rows": rows, "file_mb": round(path.stat().st_size / 2**20, 1), "wall_seconds": round(wall, 2), **res}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--config")
    ap.add_argument("--out")
    ap.add_argument("--tree", default=str(REPO))
    ap.add_argument("--rows", type=int, nargs="+", default=[50_000, 200_000, 800_000])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--data-dir", default=None, help="where the resampled CSV files are kept (default: a temp dir)")
    ap.add_argument("--timeout", type=float, default=7200)
    ap.add_argument("--name", default="scaling_rows")
    ap.add_argument("--include", nargs="*", default=[],
                    help="result files (names in benchmarks/results) whose rows join the table (e.g. the 10M run)")
    ap.add_argument("--before", default="scaling_rows_final",
                    help="result file of the code before this change: its peak RSS per row count joins the table")
    ap.add_argument("--merge", action="store_true",
                    help="run nothing: rebuild the table of --name from its results and --include")
    args = ap.parse_args()
    if args.child:
        return child(args)
    tree = str(Path(args.tree).resolve())
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="scaling_rows_"))
    data_dir.mkdir(parents=True, exist_ok=True)
    results = []
    if args.merge:
        prev = json.loads((REPO / "benchmarks" / "results" / f"{args.name}.json").read_text())
        results, args.rows, args.epochs = [r for r in prev["results"] if "from" not in r], [], prev["epochs"]
    for rows in args.rows:
        res = run_one(rows, tree, data_dir, args.epochs, args.timeout)
        results.append(res)
        print(json.dumps({k: v for k, v in res.items() if k != "phases"}))
    for r in results:
        r.setdefault("epochs", args.epochs)
    for name in args.include:
        other = json.loads((REPO / "benchmarks" / "results" / f"{name}.json").read_text())
        for r in other["results"]:
            r.setdefault("epochs", other.get("epochs"))
            r["from"] = name
            results = [x for x in results if x["rows"] != r["rows"]] + [r]
    results.sort(key=lambda r: r["rows"])
    before = {}
    before_path = REPO / "benchmarks" / "results" / f"{args.before}.json"
    if args.before and before_path.exists():
        before = {int(k): v for k, v in json.loads(before_path.read_text())["summary"].items()}
    write_result(args.name, {"config": "configs/quickstart.yaml on Adult resampled to N rows, test 0.2",
                             "tree": "this checkout" if tree == str(REPO) else "another checkout (--tree)",
                             "epochs": args.epochs, "before": args.before if before else None,
                             "summary": summarize(results, before), "results": results})


def summarize(results, before=None) -> dict:
    """The table: per row count wall, peak RSS (and above the smallest run), the top-level phase timings,
    accuracy, epsilon, and the peak RSS of the code before (``before``: an earlier result's summary)."""
    before = before or {}
    ok = [r for r in results if "peak_rss_mb" in r]
    base = min(ok, key=lambda r: r["rows"]) if ok else None
    out = {}
    for r in results:
        row = {"epochs": r.get("epochs"), "wall_seconds": r.get("wall_seconds"), "peak_rss_mb": r.get("peak_rss_mb"),
               "above_smallest_mb": (round(r["peak_rss_mb"] - base["peak_rss_mb"], 1)
                                     if base and "peak_rss_mb" in r else None),
               "phase_seconds": {p["phase"]: p["seconds"] for p in r.get("phases", [])
                                 if p["depth"] == 0 or p["phase"] in ("read", "train_dataset")},
               "phase_peak_rss_mb": {p["phase"]: p["peak_rss_mb"] for p in r.get("phases", [])
                                     if p["depth"] == 0 or p["phase"] in ("read", "train_dataset")},
               "accuracy": r.get("accuracy"), "epsilon": r.get("epsilon")}
        if "error" in r:
            row["error"] = r["error"][-300:]
        b = before.get(r["rows"])
        if b:
            row["before"] = {"peak_rss_mb": b.get("peak_rss_mb"), "above_smallest_mb": b.get("above_smallest_mb"),
                             "wall_seconds": b.get("wall_seconds"), "accuracy": b.get("accuracy"),
                             "epsilon": b.get("epsilon")}
        out[r["rows"]] = row
    return out


if __name__ == "__main__":
    main()
