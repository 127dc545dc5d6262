"""``tfresp compare RUN_A RUN_B [--out DIR]``: key metrics side by side with deltas (B − A).

Prints the table and writes compare.md and compare.html (self-contained) into ``--out``.
"""
from __future__ import annotations

from pathlib import Path

from tfresp.errors import DataError


def run(args) -> int:
    from tfresp.report.compare import compare_reports, format_table, load_report, render

    a, b = load_report(args.run_a), load_report(args.run_b)
    out = Path(getattr(args, "out", None) or ".")
    if out.exists() and not out.is_dir():
        raise DataError(f"Invalid value for `--out`: {str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    label_a, label_b = str(args.run_a), str(args.run_b)
    print(f"A = {label_a}\nB = {label_b}")
    print(format_table(compare_reports(a, b), "A", "B"))
    md, html = render(a, b, label_a, label_b)
    (out / "compare.md").write_text(md, encoding="utf-8")
    (out / "compare.html").write_text(html, encoding="utf-8")
    print(f"tfresp: wrote {out / 'compare.md'} and {out / 'compare.html'}")
    return 0
