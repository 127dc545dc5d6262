"""``tfresp report RUN [--check] [--gate GATE]...``: re-render report.md / report.html from report.json.

The derived parts (metric CIs, scorecard, gates, warnings) are recomputed from report.json with the
run's own config, so a report written by an older tfresp gets the current rendering. ``--check`` is an alias
of ``tfresp verify RUN`` (:mod:`tfresp.commands.verify`): it writes nothing, recomputes every number from the
run's artifacts, exits 2 on a mismatch, 1 when a gate fails, 0 otherwise. ``--gate`` adds gates for that
check only (they are not written into the run's files).
"""
from __future__ import annotations

from pathlib import Path

from tfresp.errors import DataError


REPORT_FILES = ("report.json", "report.md", "report.html")


def rerender(run_dir, check_gates=(), write: bool = True) -> tuple[dict, dict | None]:
    """Recompute and rewrite a run's report files; return (report, gates incl. ``check_gates`` or None).

    ``write=False`` only recomputes (``report --check`` on a read-only run directory).
    """
    from tfresp.run.io import check_writable, refuse_read_only_rerender
    from tfresp.report.compare import load_report
    from tfresp.report.derive import derive
    from tfresp.report.gates import Gate, evaluate
    from tfresp.report.writer import write_files

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"Invalid value for `run`: {str(run_dir)!r} is not a directory")
    for i, g in enumerate(check_gates):  # a malformed --gate fails before anything is written
        Gate.parse(g, i)
    check_writable([run_dir / f for f in REPORT_FILES], "run")
    report = load_report(run_dir)
    from tfresp.federated import sites_report

    if sites_report.is_sites_report(report):  # a sites run: report.md / report.html again, nothing else
        if check_gates:
            raise DataError("`--gate`: a sites run has no release gates. Received: --gate "
                            f"{list(check_gates)!r}. Remedy: leave out --gate")
        from tfresp.federated.sites_run import markdown

        return sites_report.rerender(run_dir, markdown, write=write), None
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
    try:
        if write:
            write_files(run_dir, report)
    except OSError as exc:
        refuse_read_only_rerender(exc, run_dir, "tfresp report RUN --check")
    gates = report.get("gates")
    if check_gates:
        cfg_gates = list(((report.get("run") or {}).get("config") or {}).get("gates") or [])
        gates = evaluate(cfg_gates + list(check_gates), report, report.get("scorecard"))
    return report, gates


def run(args) -> int:
    if args.check:  # an alias of `tfresp verify`: reads only, never re-renders
        from tfresp.commands import verify

        return verify.run(args)
    if getattr(args, "gates", None):
        raise DataError("`--gate`: extra gates are checked with --check (`tfresp verify RUN --gate ...`); "
                        "re-rendering does not write them. Remedy: add --check")
    rerender(args.run)
    files = ["report.md"] + (["report.html"] if (Path(args.run) / "report.html").exists() else [])
    print(f"tfresp: re-rendered {', '.join(str(Path(args.run) / f) for f in files)}")
    return 0
