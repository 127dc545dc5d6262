"""Monitoring evidence on Adult: no shift vs constructed shifts, alarms per window, and throughput.

Trains the quickstart MLP (non-private, fairness audit on sex; gates on accuracy and the sex equal-opportunity gap),
then monitors the official test split cut into windows of 2,000 rows: unchanged, with age shifted by +10 years
from window 4 on, with a category the model never saw (workclass 'Space-force', 10% of rows) from window 4 on, and
with women's labels changed (30% of their negatives relabelled positive) from window 4 on. Prints which alarms fire
in which window and writes benchmarks/results/monitor_adult.json.

    python benchmarks/monitor_adult.py [--run runs/monitor-bench]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tfresp  # noqa: E402
import numpy as np  # noqa: E402

WINDOW = 2000
SHIFT_FROM = 4


def shifted(test, kind, rng):
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="runs/monitor-bench")
    args = ap.parse_args()
    run = Path(args.run)
    if not (run / "monitor" / "reference.json").is_file():
        tfresp.fit("configs/quickstart.yaml", out=str(run), overwrite=True, quiet=True, overrides=[
            "privacy=null", "compression=null", "export.tflite=[]", "fairness.mitigation=none",
            "gates=['accuracy >= 0.82', 'fairness.sex.equal_opportunity_difference <= 0.12']"])
    from tfresp.data.sources import load_source

    frames, _ = load_source("adult")
    test = frames["test"].reset_index(drop=True)
    rng = np.random.default_rng(0)
    out = {"window": WINDOW, "shift_from_window": SHIFT_FROM, "scenarios": {}}
    for kind in ("none", "age+10", "unseen_category", "women_label_rate"):
        df = test if kind == "none" else shifted(test, kind, rng)
        t0 = time.perf_counter()
        res = tfresp.monitor(run, [df], labels="income", window=WINDOW, out=f"/tmp/monitor-bench-{kind}")
        wall = time.perf_counter() - t0
        alarms = {w["index"]: [f"{a['type']}:{a.get('column') or a.get('gate')}" for a in w["alarms"]]
                  for w in res["windows"]}
        acc = [round(w["performance"]["accuracy"], 4) for w in res["windows"]]
        eo = [round(((w["fairness"].get("sex") or {}).get("equal_opportunity_difference") or float("nan")), 4)
              for w in res["windows"]]
        out["scenarios"][kind] = {"alarms_by_window": alarms, "summary": res["summary"], "accuracy": acc,
                                  "sex_equal_opportunity_difference": eo,
                                  "rows_per_second_end_to_end": len(df) / wall,
                                  "rows_per_second_monitor": res["throughput"]["rows_per_second"]}
        print(f"== {kind}: first drift window {res['summary']['first_drift_window']}, first gate failure "
              f"{res['summary']['first_gate_failure_window']}, {len(df) / wall:.0f} rows/s end to end")
        for i, a in alarms.items():
            print(f"   window {i}: acc {acc[i]}, sex EOpp diff {eo[i]}, alarms {a}")
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    Path("benchmarks/results/monitor_adult.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
