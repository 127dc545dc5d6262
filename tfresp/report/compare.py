"""Side-by-side comparison of two runs' reports ("what did DP / fairness cost us?").

Example:
    >>> rows = compare_reports(load_report("runs/base"), load_report("runs/dp"))
    >>> print(format_table(rows))
"""
from __future__ import annotations

import json
from pathlib import Path

from tfresp.errors import DataError
from tfresp.evaluation.served import served_path
from tfresp.report.gates import lookup
from tfresp.report.scorecard import infer_direction

_ABSENT = "— (off)"
_SERVED = "evaluation.served."
_EVAL = ("accuracy", "balanced_accuracy", "f1", "roc_auc", "precision", "recall")
_NOT_COMPARABLE = "not better: {run} is degenerate ({codes})"


def _no_constant(name: str):
    raise ValueError(f"contains {name}, which is not a JSON number")


def load_report(run) -> dict:
    """report.json of a run directory (or the file itself); :class:`DataError` when missing or not JSON."""
    p = Path(run)
    path = p / "report.json" if p.is_dir() else p
    if not path.is_file():
        raise DataError(f"Invalid value for `run`: no report.json at {str(path)!r} (is it a tfresp run directory?)")
    try:
        report = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"Invalid value for `run`: {str(path)!r} is not valid JSON ({exc})") from None
    except ValueError as exc:  # NaN / Infinity: not JSON, and tfresp never writes them (allow_nan=False)
        raise DataError(f"Invalid value for `run`: {str(path)!r} {exc}; it was not written by tfresp as is. "
                        "Remedy: restore the run's report.json or re-run `tfresp fit`") from None
    if not isinstance(report, dict) or "run" not in report or "schema_version" not in report:
        raise DataError(f"Invalid value for `run`: {str(path)!r} is not a tfresp report (no run/schema_version)")
    return report


def key_metrics(a: dict, b: dict) -> list:
    """The dotted paths compared, in display order (union over both reports)."""
    paths = [f"evaluation.served.{m}" for m in _EVAL if _served(a) or _served(b)]
    paths += [f"evaluation.test.{m}" for m in _EVAL]
    paths += ["privacy.epsilon", "privacy.delta", "privacy.noise_multiplier", "privacy.audit.mia_auc"]
    for r in (a, b):
        for attr, sec in (r.get("fairness") or {}).items():
            if isinstance(sec, dict):
                for m in ("demographic_parity_difference", "equalized_odds_difference"):
                    if isinstance(sec.get(m), (int, float)):
                        paths.append(f"fairness.{attr}.{m}")
    for r in (a, b):
        for key, sec in (r.get("robustness") or {}).items():
            if "@" in str(key) and isinstance(sec, dict):
                paths.append(f"robustness.{key}.accuracy")
    for r in (a, b):
        for variant, sec in (r.get("compression") or {}).items():
            if isinstance(sec, dict):
                for m in ("accuracy", "bytes", "gzip_bytes", "latency_ms_p50"):
                    if isinstance(sec.get(m), (int, float)):
                        paths.append(f"compression.{variant}.{m}")
    paths += ["model.parameters", "training.timings.fit_seconds", "scorecard.ethics.normalized",
              "scorecard.bias.normalized", "gates.weighted_score"]
    seen, out = set(), []
    for p in paths:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _intish(v):
    """Counts (parameters, bytes, steps) come back from lookup as floats: show them as integers."""
    return int(v) if isinstance(v, float) and v.is_integer() and abs(v) >= 10 else v


def _direction(path: str) -> str | None:
    if path in ("model.parameters", "privacy.delta", "privacy.noise_multiplier"):
        return None
    if path.startswith("scorecard.bias") or path.endswith("fit_seconds"):
        return "lower"
    return infer_direction(path)


def _served(r: dict) -> bool:
    return served_path(r) != "evaluation.test"


def compare_reports(a: dict, b: dict) -> list:
    """Rows ``{metric, a, b, delta, relative, verdict}``; delta = B − A; verdict better/worse/same/n/a.

    A degenerate run (:mod:`tfresp.evaluation.degenerate`: single-class predictions, chance-level balanced
    accuracy, test == train) is never called better: its small gaps describe a constant predictor.
    """
    from tfresp.evaluation.degenerate import findings

    blocked = {name: [f["code"] for f in findings(r) if f["blocks_green"]] for name, r in (("A", a), ("B", b))}
    rows = []
    for path in key_metrics(a, b):
        va, vb = _intish(_value(a, path)), _intish(_value(b, path))
        if va is None and vb is None:
            continue
        delta = vb - va if va is not None and vb is not None else None
        rel = delta / abs(va) if delta is not None and va not in (0, None) else None
        d = _direction(path)
        if delta is None or d is None:
            verdict = "n/a"
        elif abs(delta) <= 1e-12:
            verdict = "same"
        else:
            verdict = "better" if (delta > 0) == (d == "higher") else "worse"
            winner = "B" if verdict == "better" else "A"
            if blocked[winner]:
                verdict = _NOT_COMPARABLE.format(run=winner, codes=", ".join(blocked[winner]))
        rows.append({"metric": path, "a": va, "b": vb, "delta": delta, "relative": rel, "verdict": verdict,
                     "note": _note(a, b, path)})
    return rows


def _value(r: dict, path: str):
    """A report number; ``evaluation.served.<m>`` is the served model's metric whether or not the run
    post-processes (a run without post-processing serves its raw model: ``evaluation.test``)."""
    if path.startswith(_SERVED):
        return lookup(r, f"{served_path(r)}.{path[len(_SERVED):]}")
    return lookup(r, path)


def _note(a: dict, b: dict, path: str):
    """Which model a row reads when the two runs serve differently (None when it is plain)."""
    if path.startswith(_SERVED):
        plain = [n for n, r in (("A", a), ("B", b)) if not _served(r)]
        return (f"served model; {' and '.join(plain)} serves its raw model (evaluation.test)" if plain
                else "served model")
    if path.startswith("evaluation.test.") and (_served(a) or _served(b)):
        return "raw model (" + " and ".join(n for n, r in (("A", a), ("B", b)) if _served(r)) + \
            " serves a post-processed model)"
    return None


def _flat(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            if v is None and not prefix:  # a section that is off: its keys are simply absent
                continue
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = d
    return out


def config_diff(a: dict, b: dict) -> list:
    """``[(key, value_a, value_b)]`` of resolved-config keys that differ (sections on/off included)."""
    fa = _flat(((a.get("run") or {}).get("config")) or {})
    fb = _flat(((b.get("run") or {}).get("config")) or {})
    out = []
    for k in sorted(set(fa) | set(fb)):
        if k in ("name", "out"):
            continue
        if fa.get(k, _ABSENT) != fb.get(k, _ABSENT):
            out.append((k, fa.get(k, _ABSENT), fb.get(k, _ABSENT)))
    return out


def _f(v) -> str:
    from tfresp.report.html import fmt

    return fmt(v)


def format_table(rows: list, name_a: str = "A", name_b: str = "B") -> str:
    """Plain-text table for the terminal."""
    header = ("metric", name_a[:22], name_b[:22], "delta (B-A)", "")
    body = [(r["metric"], _f(r["a"]), _f(r["b"]),
             "—" if r["delta"] is None else f"{r['delta']:+.4g}", r["verdict"]) for r in rows]
    widths = [max(len(str(x[i])) for x in [header] + body) for i in range(5)]
    lines = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) if i < 4 else str(c)
                       for i, (c, w) in enumerate(zip(row, widths))).rstrip() for row in [header] + body]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def render(a: dict, b: dict, label_a: str, label_b: str) -> tuple[str, str]:
    """``(markdown, html)`` of the comparison (the HTML is self-contained and autoescaped)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    from tfresp.report.html import fmt
    from tfresp.report.markdown import md_escape

    rows = compare_reports(a, b)
    diff = config_diff(a, b)
    ctx = {"rows": rows, "diff": diff, "a": a, "b": b, "label_a": label_a, "label_b": label_b}
    html_env = Environment(loader=PackageLoader("tfresp.report", "templates"), autoescape=True,
                           undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    html_env.filters["fmt"] = fmt
    md_env = Environment(loader=PackageLoader("tfresp.report", "templates"), autoescape=False,
                         undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    md_env.filters["fmt"] = fmt
    md_env.filters["esc"] = md_escape
    return (md_env.get_template("compare.md.j2").render(**ctx),
            html_env.get_template("compare.html.j2").render(**ctx))
