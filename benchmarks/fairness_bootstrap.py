"""The fairness audit's bootstrap at 10k / 40k / 160k test rows: row-by-row (before) vs cells (after).

"before" is the engine the audit used until the cell bootstrap: point estimates from fairlearn ``MetricFrame`` on
every row, and ``B x n`` resampled row indices (``bootstrap_indices`` + ``group_rates``, still in
``tfresp.fairness.metrics`` as the reference). "after" is ``group_report`` today: ``MetricFrame`` on the rows
compressed to weighted cells, and resamples drawn as multinomial cell counts. Both run in this process on the same
synthetic Adult-like rows (sex: 2 groups, race: 5 groups, and their intersection, as the quickstart's audit),
alternating rounds; medians are reported, with the largest difference between the two engines' CI endpoints in
units of the bootstrap standard deviation (Monte-Carlo noise of 200 resamples is ~0.1-0.2 sd).

Usage:
    .venv/bin/python benchmarks/fairness_bootstrap.py [--rows 10000 40000 160000] [--rounds 3]
    .venv/bin/python benchmarks/fairness_bootstrap.py --engines-only --rows 160000   # the resampling alone
    nice -n -15 .venv/bin/python benchmarks/fairness_bootstrap.py --table-160k --rounds 2
Writes benchmarks/results/fairness_bootstrap.json (fairness_bootstrap_engine.json).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

from tfresp.fairness import _fairlearn as fl  # noqa: E402
from tfresp.fairness import metrics as fm  # noqa: E402

GAPS = ("demographic_parity_difference", "equalized_odds_difference", "equal_opportunity_difference",
        "ece_difference", "ece_max")


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    sex = rng.choice(["Male", "Female"], n, p=[0.67, 0.33])
    race = rng.choice(["White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"], n,
                      p=[0.85, 0.095, 0.03, 0.0125, 0.0125])
    base = np.where(sex == "Male", 0.3, 0.11)
    y = (rng.random(n) < base).astype(np.int64)
    prob = np.clip(base + 0.45 * (y - base) + rng.normal(0, 0.18, n), 0, 1)
    return y, (prob >= 0.5).astype(np.int64), prob, {"sex": sex, "race": race,
                                                     "sex_x_race": fm.intersect({"sex": sex, "race": race},
                                                                                ["sex", "race"])}


def before(y, pred, prob, groups, B=200, seed=0, conf=0.95, min_group_size=30):
    """The previous engine: MetricFrame on all rows + row-by-row resampling. Returns the gaps' CIs and sds."""
    kept, _, _ = fm.split_by_size(groups, min_group_size)
    y, pred, prob, groups = y[kept], pred[kept], prob[kept], groups[kept]
    names = sorted(np.unique(groups).tolist())
    frame = fl.label_frame(y, pred, groups)
    cal = fl.calibration_frame(y, prob, groups)
    fl.by_group(frame), fl.by_group(cal)
    point = {"demographic_parity_difference": fl.gaps(frame, "selection_rate")["difference"],
             "equal_opportunity_difference": fl.gaps(frame, "true_positive_rate")["difference"],
             "ece_difference": fl.gaps(cal, "ece")["difference"], "ece_max": float(cal.group_max()["ece"])}
    point["equalized_odds_difference"] = max(point["equal_opportunity_difference"],
                                             fl.gaps(frame, "false_positive_rate")["difference"])
    rates = fm.group_rates(y, pred, prob, np.searchsorted(names, groups), len(names),
                           fm.bootstrap_indices(len(y), B, seed))
    stats = fm.gap_stats(rates)
    for m in fm.ALL_METRICS:  # the per-group intervals, as the report computed them
        for j in range(len(names)):
            fm.bc_interval(rates[m][:, j], 0.5, conf)
    return {k: (fm.bc_interval(stats[k], point[k], conf)[:2], float(np.nanstd(stats[k]))) for k in GAPS}


def after(y, pred, prob, groups, B=200, seed=0, conf=0.95):
    rep = fm.group_report(y, pred, prob, groups, bootstrap=B, confidence=conf, seed=seed)
    return {k: rep[f"{k}_ci"] for k in GAPS}


def engines_only(rows, rounds):
    """The resampling alone (no point estimates, no intervals): 200 resamples for the 3 attributes."""
    results = {}
    for n in rows:
        y, pred, prob, groups = data(n)
        cells, per_row = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            for g in groups.values():
                names, gidx = fm.group_codes(g)
                fm.gap_stats(fm.bootstrap_rates(y, pred, prob, gidx, len(names), 200, 0))
            cells.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for g in groups.values():
                names, gidx = fm.group_codes(g)
                fm.gap_stats(fm.group_rates(y, pred, prob, gidx, len(names), fm.bootstrap_indices(n, 200, 0)))
            per_row.append(time.perf_counter() - t0)
        results[n] = {"row_by_row_seconds": statistics.median(per_row), "cells_seconds": statistics.median(cells),
                      "speedup": statistics.median(per_row) / statistics.median(cells),
                      "rounds_row_by_row": per_row, "rounds_cells": cells}
        print(n, results[n])
    write_result("fairness_bootstrap_engine", {
        "what": "200 bootstrap resamples of the group rates and gaps for sex, race and sex x race: row-by-row "
                "indices vs multinomial cell counts, median of alternating rounds", "rounds": rounds,
        "load_average_at_end": os.getloadavg(), "results": results})


def table_160k(rounds=2):
    """160k test rows: before / after ``group_report`` x3 and the audit's ``group_reports`` (with the threshold
    sweeps). The recorded run used ``nice -n -15`` on the shared machine (its load average is saved)."""
    from tfresp.fairness import audit

    y, pred, prob, groups = data(160_000)
    g = {"sex": groups["sex"], "race": groups["race"]}
    before_t, after_t, full = [], [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        [before(y, pred, prob, gg) for gg in groups.values()]
        before_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        [after(y, pred, prob, gg) for gg in groups.values()]
        after_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        audit.group_reports(y, pred, prob, g, ["sex", "race"], bootstrap=200)
        full.append(time.perf_counter() - t0)
    write_result("fairness_bootstrap_160k_priority", {
        "what": "160k test rows, 200 resamples, sex/race/sex_x_race; alternating rounds, median",
        "before_group_report_x3_seconds": statistics.median(before_t),
        "after_group_report_x3_seconds": statistics.median(after_t),
        "after_full_audit_group_reports_with_threshold_sweeps_seconds": statistics.median(full),
        "rounds": {"before": before_t, "after": after_t, "after_full": full}, "load_average": os.getloadavg()})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 40_000, 160_000])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--engines-only", action="store_true", help="time the resampling alone")
    ap.add_argument("--table-160k", action="store_true", help="before/after and the audit's group_reports at 160k")
    args = ap.parse_args()
    if args.table_160k:
        return table_160k(args.rounds)
    if args.engines_only:
        return engines_only(args.rows, args.rounds)
    after(*data(2000)[:3], data(2000)[3]["sex"])  # warm-up (imports)
    results = {}
    for n in args.rows:
        y, pred, prob, groups = data(n)
        t_before, t_after = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            old = {a: before(y, pred, prob, g) for a, g in groups.items()}
            t_before.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            new = {a: after(y, pred, prob, g) for a, g in groups.items()}
            t_after.append(time.perf_counter() - t0)
        worst = 0.0
        for a in groups:
            for k in GAPS:
                (lo, hi), sd = old[a][k]
                if lo is None or not sd:
                    continue
                worst = max(worst, abs(new[a][k][0] - lo) / sd, abs(new[a][k][1] - hi) / sd)
        results[n] = {"before_seconds": statistics.median(t_before), "after_seconds": statistics.median(t_after),
                      "speedup": statistics.median(t_before) / statistics.median(t_after),
                      "rounds_before": t_before, "rounds_after": t_after,
                      "max_ci_endpoint_difference_in_bootstrap_sd": worst}
        print(n, {k: round(v, 3) if isinstance(v, float) else v for k, v in results[n].items()})
    write_result("fairness_bootstrap", {
        "what": "per-group metrics + gaps with 200-resample BC bootstrap CIs for sex, race and sex x race "
                "(group_report, without the threshold sweep), median of alternating rounds",
        "rounds": args.rounds, "load_average_at_end": os.getloadavg(), "results": results})


if __name__ == "__main__":
    main()
