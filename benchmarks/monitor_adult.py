"""Monitoring evidence on Adult: no shift vs constructed shifts, alarms per window, and throughput.

Evidence (``--evidence``): trains the quickstart MLP twice — non-private (fairness audit on sex; gates on accuracy and
the sex equal-opportunity gap) and the DP quickstart as shipped (configs/quickstart.yaml, ε = 3, DP preprocessing)
— then monitors the official test split cut into windows of 2,000 rows: unchanged, with age shifted by +10 years
from window 4 on, with a category the model never saw (workclass 'Space-force', 10% of rows) from window 4 on, and
with women's labels changed (30% of their negatives relabelled positive) from window 4 on. Counts the alarms of the
unshifted run (false alarms) and where each shift is first detected.

Speed (``--speed``): ``tfresp monitor RUN BATCH --labels income --window 2000`` as a fresh process (start-up
included) on 160,000 labelled rows (the official test split repeated), alternating rounds between this tree and a
baseline tree (``--baseline REV``: that commit's ``tfresp/`` from ``git archive``), median of ``--rounds``. Reports
wall time, the process's CPU time, and the monitor's own rows/s (its window loop, after loading).

    python benchmarks/monitor_adult.py --evidence --speed --baseline 63fd1e9 [--rounds 3]

Writes benchmarks/results/monitor_adult.json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._common import REPO, write_result  # noqa: E402

WINDOW = 2000
SHIFT_FROM = 4
SPEED_ROWS = 160_000


def shifted(test, kind, rng):
    import numpy as np

    df = test.copy()
    later = np.arange(len(df)) >= SHIFT_FROM * WINDOW
    if kind == "age+10":
        df.loc[later, "age"] = df.loc[later, "age"] + 10
    elif kind == "unseen_category":
        pick = later & (rng.random(len(df)) < 0.10)
        df.loc[pick, "workclass"] = "Space-force"
    elif kind == "women_label_rate":
        neg = df["income"].astype(str).str.startswith("<=")
        pick = later & (df["sex"] == "Female").to_numpy() & neg.to_numpy() & (rng.random(len(df)) < 0.30)
        pos = sorted(set(df["income"].astype(str)) - {df.loc[neg, "income"].astype(str).iloc[0]})[0]
        df.loc[pick, "income"] = pos
    return df


NONPRIVATE = ["privacy=null", "compression=null", "export.tflite=[]", "fairness.mitigation=none",
              "gates=['accuracy >= 0.82', 'fairness.sex.equal_opportunity_difference <= 0.12']"]


def fit_run(run: Path, overrides):
    import tfresp

    if not (run / "monitor" / "reference.json").is_file():
        tfresp.fit("configs/quickstart.yaml", out=str(run), overwrite=True, quiet=True, overrides=overrides)


def scenarios(run: Path, test, tag: str) -> dict:
    import numpy as np

    import tfresp

    rng = np.random.default_rng(0)
    out = {}
    for kind in ("none", "age+10", "unseen_category", "women_label_rate"):
        df = test if kind == "none" else shifted(test, kind, rng)
        res = tfresp.monitor(run, [df], labels="income", window=WINDOW, out=f"/tmp/monitor-bench-{tag}-{kind}")
        alarms = {w["index"]: [f"{a['type']}:{a.get('column') or a.get('gate')}" for a in w["alarms"]]
                  for w in res["windows"]}
        first = {t: next((i for i, a in alarms.items() if any(x.startswith(t + ":") for x in a)), None)
                 for t in ("drift", "unseen_category", "gate", "gate_warning")}
        out[kind] = {"alarms_by_window": alarms, "summary": res["summary"], "first_window_with": first,
                     "accuracy": [round(w["performance"]["accuracy"], 4) for w in res["windows"]],
                     "alarms_before_shift": sum(len([x for x in a if not x.startswith("gate_warning")])
                                                for i, a in alarms.items() if i < SHIFT_FROM)}
        print(f"== {tag} {kind}: first windows with {first}; drift alarms {res['summary']['drift_alarms']}, "
              f"unseen {res['summary']['unseen_category_alarms']}, gates failed {res['summary']['gates_failed']}")
    return out


def _monitor_process(src: Path, run: Path, batch: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "TF_CPP_MIN_LOG_LEVEL": "3"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tfresp.cli", "monitor", str(run), str(batch), "--labels", "income",
                    "--window", str(WINDOW), "--out", str(out)], env=env, check=True, cwd="/tmp",
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = json.loads((out / "monitor.json").read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_seconds": wall, "cpu_seconds": cpu, "monitor_rows_per_second": m["throughput"]["rows_per_second"],
            "monitor_rows_per_cpu_second": m["throughput"].get("rows_per_cpu_second"), "summary": m["summary"]}


def speed(run: Path, test, baseline: str, rounds: int) -> dict:
    import pandas as pd

    tmp = Path(tempfile.mkdtemp(prefix="monitor-speed-"))
    batch = tmp / "batch.csv"
    reps = -(-SPEED_ROWS // len(test))
    pd.concat([test] * reps, ignore_index=True).iloc[:SPEED_ROWS].to_csv(batch, index=False)
    base_src = tmp / "baseline"
    base_src.mkdir()
    archive = subprocess.run(["git", "archive", baseline, "tfresp"], cwd=REPO, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(base_src)], input=archive.stdout, check=True)
    trees = {"baseline": base_src, "this": REPO}
    results = {k: [] for k in trees}
    for r in range(rounds):  # alternating rounds: both see the same machine load
        for name in (("baseline", "this") if r % 2 == 0 else ("this", "baseline")):
            res = _monitor_process(trees[name], run, batch, tmp / f"out-{name}")
            results[name].append(res)
            print(f"   round {r} {name}: wall {res['wall_seconds']:.1f} s, cpu {res['cpu_seconds']:.1f} s, "
                  f"monitor loop {res['monitor_rows_per_second']:.0f} rows/s")
    med = {name: {k: statistics.median(x[k] for x in rs) for k in ("wall_seconds", "cpu_seconds",
                                                                    "monitor_rows_per_second")}
           for name, rs in results.items()}
    same = results["baseline"][0]["summary"] == results["this"][0]["summary"]
    return {"rows": SPEED_ROWS, "window": WINDOW, "rounds": rounds, "baseline_commit": baseline,
            "median": med, "all_rounds": results,
            "ratio_wall_this_over_baseline": med["this"]["wall_seconds"] / med["baseline"]["wall_seconds"],
            "ratio_cpu_this_over_baseline": med["this"]["cpu_seconds"] / med["baseline"]["cpu_seconds"],
            "same_alarm_summary": same,
            "end_to_end_rows_per_second": {k: SPEED_ROWS / v["wall_seconds"] for k, v in med.items()},
            "load_average_at_end": os.getloadavg()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/monitor-bench", help="non-private run directory (created if missing)")
    ap.add_argument("--dp-run", default="runs/monitor-bench-dp", help="DP quickstart run (created if missing)")
    ap.add_argument("--evidence", action="store_true")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--baseline", default="63fd1e9", help="commit whose tfresp/ is the speed baseline")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not (args.evidence or args.speed):
        args.evidence = args.speed = True
    from tfresp.data.sources import load_source

    test = load_source("adult")[0]["test"].reset_index(drop=True)
    out = {"window": WINDOW, "shift_from_window": SHIFT_FROM}
    path = REPO / "benchmarks" / "results" / "monitor_adult.json"
    if path.is_file():  # keep the part not re-measured
        old = json.loads(path.read_text())
        out.update({k: v for k, v in old.items() if k in ("scenarios", "scenarios_dp", "speed")})
    run, dp_run = Path(args.run).resolve(), Path(args.dp_run).resolve()  # the monitor subprocess runs in /tmp
    fit_run(run, NONPRIVATE)
    if args.evidence:
        out["scenarios"] = scenarios(run, test, "nonprivate")
        fit_run(dp_run, [])
        out["scenarios_dp"] = scenarios(dp_run, test, "dp")
    if args.speed:
        out["speed"] = speed(run, test, args.baseline, args.rounds)
        print(json.dumps(out["speed"]["median"], indent=1))
    write_result("monitor_adult", out)


if __name__ == "__main__":
    main()
