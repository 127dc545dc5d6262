"""``tfresp monitor RUN BATCH [BATCH...] [--labels COL] [--window N] [--out DIR]``.

Scores each batch with the run's exported SavedModel, compares every window with the run's reference profile
(input and prediction drift, BH-controlled), and — with ``--labels`` — measures performance and the run's fairness
metrics per window and re-checks the run's release gates. Exit 1 when a gate fails on any window (and, with
``--fail-on-drift``, when any drift or unseen-category alarm fires), so a scheduler can alert.
"""
from __future__ import annotations


def add_parser(sub) -> None:
    m = sub.add_parser("monitor", help="monitor a released run on new batches (drift, performance, fairness)")
    m.add_argument("run")
    m.add_argument("batches", nargs="+", metavar="BATCH", help="CSV/Parquet/JSONL files with the raw columns")
    m.add_argument("--labels", default=None, metavar="COL", help="label column, when the batches have ground truth")
    m.add_argument("--window", type=int, default=None, metavar="N", help="rows per window (default: one per batch)")
    m.add_argument("--out", default=None, help="directory for monitor.json / monitor.html (default RUN/monitor)")
    m.add_argument("--reference", default=None, metavar="FILE", help="public reference rows instead of the run's "
                                                                      "stored profile")
    m.add_argument("--alpha", type=float, default=0.01, help="false-discovery rate of the drift tests per window")
    m.add_argument("--min-psi", type=float, default=0.1, help="PSI below which a column never alarms")
    m.add_argument("--gate", dest="gates", action="append", default=[], metavar="GATE",
                   help="extra gate checked on every window, e.g. 'accuracy >= 0.8'; repeatable")
    m.add_argument("--gate-mode", choices=["ci", "point"], default="ci",
                   help="ci: a gate fails when its metric's whole 95%% CI is on the failing side (default); "
                        "point: the point estimate decides")
    m.add_argument("--fail-on-drift", action="store_true", help="exit 1 on any drift or unseen-category alarm")


def run(args) -> int:
    from tfresp.monitoring import monitor

    res = monitor(args.run, args.batches, labels=args.labels, window=args.window, out=args.out,
                  reference=args.reference, alpha=args.alpha, min_psi=args.min_psi, gates=args.gates,
                  gate_mode=args.gate_mode)
    s = res["summary"]
    print(f"tfresp: monitored {s['rows']} rows in {s['windows']} windows "
          f"({res['throughput']['rows_per_second']:.0f} rows/s); drift alarms {s['drift_alarms']}, "
          f"unseen-category alarms {s['unseen_category_alarms']}, failed gates {s['gates_failed']} "
          f"(+{s['gate_warnings']} warnings)")
    for w in res["windows"]:
        for a in w["alarms"]:
            what = a.get("column") or a.get("gate")
            print(f"ALARM window {w['index']} ({w['source']}): {a['type']} {what}")
    print(f"tfresp: wrote {res['files']['json']} and {res['files']['html']}")
    if s["gates_failed"] or (args.fail_on_drift and (s["drift_alarms"] or s["unseen_category_alarms"])):
        return 1
    return 0
