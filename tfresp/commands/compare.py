"""``tfresp compare RUN_A RUN_B [--out DIR]``: key metrics side by side with deltas (B − A).

Prints the table and writes compare.md and compare.html (self-contained) into ``--out``.
"""
from __future__ import annotations

from pathlib import Path

from tfresp.errors import DataError
from tfresp.run.io import atomic_write, check_writable

MARKER = "written by tfresp compare"  # in every file it writes: other files of these names are not replaced


def _mark_html(html: str) -> str:
    head, sep, rest = html.partition("\n")
    if head.lower().startswith("<!doctype"):
        return f"{head}{sep}<!-- {MARKER} -->\n{rest}"
    return f"<!-- {MARKER} -->\n{html}"


def run(args) -> int:
    from tfresp.report.compare import compare_reports, format_table, load_report, render

    a, b = load_report(args.run_a), load_report(args.run_b)
    out = Path(getattr(args, "out", None) or ".")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise DataError(f"`--out`: {str(out)!r} exists and is not a directory (or is a symbolic link). "
                        f"Received: out={str(out)!r}. Remedy: give a directory")
    files = [out / "compare.md", out / "compare.html"]
    check_writable(files, "--out", owned_marker=MARKER)  # an existing compare.md must be one tfresp wrote
    label_a, label_b = str(args.run_a), str(args.run_b)
    md, html = render(a, b, label_a, label_b)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"`--out`: cannot create the directory ({exc.strerror}). Received: out={str(out)!r}. "
                        "Remedy: choose a writable directory") from None
    print(f"A = {label_a}\nB = {label_b}")
    print(format_table(compare_reports(a, b), "A", "B"))
    atomic_write(files[0], f"<!-- {MARKER} -->\n" + md)
    atomic_write(files[1], _mark_html(html))
    print(f"tfresp: wrote {out / 'compare.md'} and {out / 'compare.html'}")
    return 0
