"""``tfresp report RUN [--check] [--gate GATE]...``: re-render report.md / report.html from report.json.

The derived parts (metric CIs, scorecard, gates, warnings) are recomputed from report.json with the
run's own config, so a report written by an older tfresp gets the current rendering. ``--check`` prints
one line per failed gate and exits 1 when any gate fails (0 otherwise); before that it re-derives the
privacy ε from the recorded mechanisms (tfresp/privacy/verify.py) and exits 2 when report.json disagrees. ``--gate`` adds gates for this
check only (they are not written into the run's files).
"""
from __future__ import annotations

from pathlib import Path

from tfresp.errors import DataError


def rerender(run_dir, check_gates=()) -> tuple[dict, dict | None]:
    """Recompute and rewrite a run's report files; return (report, gates incl. ``check_gates`` or None)."""
    from tfresp.report.compare import load_report
    from tfresp.report.derive import derive
    from tfresp.report.gates import evaluate
    from tfresp.report.writer import write_files

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"Invalid value for `run`: {str(run_dir)!r} is not a directory")
    report = load_report(run_dir)
    major = str(report.get("schema_version", "")).split(".")[0]
    if major != "1":
        raise DataError(f"Invalid value for `run`: report schema_version {report.get('schema_version')!r} is not "
                        "supported (expected 1.x)")
    from tfresp.report.writer import SCHEMA_VERSION

    report["schema_version"] = SCHEMA_VERSION  # derived sections are recomputed in the current 1.x layout
    derive(report)
    try:
        from tfresp.report.schema import validate

        problems = validate(report)
    except ModuleNotFoundError:  # jsonschema is a dev extra: re-rendering works without it
        problems = []
    if problems:
        raise DataError(f"{run_dir / 'report.json'} does not match the report schema: " + "; ".join(problems[:5])
                        + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))
    write_files(run_dir, report)
    gates = report.get("gates")
    if check_gates:
        cfg_gates = list(((report.get("run") or {}).get("config") or {}).get("gates") or [])
        gates = evaluate(cfg_gates + list(check_gates), report, report.get("scorecard"))
    return report, gates


def run(args) -> int:
    from tfresp.report.gates import failure_lines

    if args.check:  # a privacy claim that its recorded mechanisms do not give must not pass any gate
        from tfresp.privacy.verify import check_run

        bad = check_run(args.run)
        if bad:
            raise DataError(f"{Path(args.run) / 'report.json'}: the privacy claim does not hold: " + "; ".join(bad))
    report, gates = rerender(args.run, getattr(args, "gates", []) or [])
    files = ["report.md"] + (["report.html"] if (Path(args.run) / "report.html").exists() else [])
    print(f"tfresp: re-rendered {', '.join(str(Path(args.run) / f) for f in files)}")
    if not args.check:
        return 0
    if not gates:
        print("tfresp: no release gates configured: check passed")
        return 0
    lines = failure_lines(gates)
    for line in lines:
        print(line)
    passed = gates["count"] - len(gates["failed"])
    score = gates.get("weighted_score")
    print(f"tfresp: {passed}/{gates['count']} gates passed"
          + (f" (weighted score {score:.3f})" if score is not None else ""))
    return 1 if lines else 0
