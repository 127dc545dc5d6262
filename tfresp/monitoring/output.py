"""``monitor.json`` and a self-contained ``monitor.html`` (inline CSS and SVG plots, no scripts, strict CSP).

Files are written with :mod:`tfresp.run.io` (atomic, never through a symlink); an existing ``monitor.json`` or
``monitor.html`` is replaced only if tfresp wrote it (its generator marker).
"""
from __future__ import annotations

import json
from pathlib import Path

from jinja2 import Environment, select_autoescape

from tfresp.errors import ConfigError

MARKER = "tfresp-monitor"

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="generator" content="{{ marker }}">
<title>tfresp monitor — {{ m.run.name or m.run.path }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}
.bad{background:#fbe3e4}.ok{background:#e6f4ea}img{max-width:100%}code{background:#f4f4f4}
</style></head><body>
<h1>Monitoring: {{ m.run.name or m.run.path }}</h1>
<p>{{ m.summary.windows }} windows, {{ m.summary.rows }} rows; reference: {{ m.reference.source }}.
Drift alarms: <b>{{ m.summary.drift_alarms }}</b> (in {{ m.summary.windows_with_drift }} windows);
unseen-category alarms: <b>{{ m.summary.unseen_category_alarms }}</b>; failed gates: <b>{{ m.summary.gates_failed }}</b>.
Throughput: {{ '%.0f' % (m.throughput.rows_per_second or 0) }} rows/s.</p>
{% for title, uri in plots %}<h2>{{ title }}</h2><img alt="{{ title }}" src="{{ uri }}">{% endfor %}
<h2>Windows</h2>
<table><tr><th>#</th><th>source</th><th>rows</th><th>drifted features</th><th>max PSI</th>
<th>accuracy [95% CI]</th><th>alarms</th></tr>
{% for w in m.windows %}<tr class="{{ 'bad' if w.alarms else 'ok' }}"><td>{{ w.index }}</td><td>{{ w.source }}</td>
<td>{{ w.rows }}</td><td>{{ w.drift.overall.drifted_features | join(', ') }}</td>
<td>{{ '%.3f' % w.drift.overall.max_psi }}</td>
<td>{% if w.performance %}{{ '%.4f' % w.performance.accuracy }} [{{ '%.4f' % w.performance.accuracy_ci[0] }},
{{ '%.4f' % w.performance.accuracy_ci[1] }}]{% else %}—{% endif %}</td>
<td>{% for a in w.alarms %}{{ a.type }}: {{ a.column or a.gate }}{% if not loop.last %}; {% endif %}{% endfor %}</td></tr>
{% endfor %}</table>
<h2>Engines</h2><ul>{% for k, v in m.engines.items() %}<li><b>{{ k }}</b>: {{ v }}</li>{% endfor %}</ul>
<p>Settings: alpha={{ m.settings.alpha }}, min_psi={{ m.settings.min_psi }}, window={{ m.settings.window }},
gates: {% for g in m.settings.gates %}<code>{{ g }}</code> {% endfor %}</p>
</body></html>
"""


def plots(m: dict) -> list:
    """``[(title, data URI)]``: input drift, accuracy with its Wilson CI, fairness gaps, per window (inline SVG,
    :mod:`tfresp.monitoring.svgplot`)."""
    from tfresp.monitoring.svgplot import line_chart

    ws = m["windows"]
    idx = [w["index"] for w in ws]
    out = [("Input drift per window", line_chart(
        idx, [("max PSI over features", [w["drift"]["overall"]["max_psi"] for w in ws], "solid"),
              ("share of features drifted", [w["drift"]["overall"]["share_drifted"] for w in ws], "solid")],
        hline=("PSI alarm floor", m["settings"]["min_psi"])))]
    if any(w.get("performance") for w in ws):
        perf = [w.get("performance") or {} for w in ws]
        ci = [p.get("accuracy_ci") or [None, None] for p in perf]
        out.append(("Accuracy per window", line_chart(
            idx, [("accuracy (served model)", [p.get("accuracy") for p in perf], "solid")],
            band=("95% Wilson CI", [c[0] for c in ci], [c[1] for c in ci]))))
        attrs = sorted({a for w in ws for a in (w.get("fairness") or {})})
        if attrs:
            series = [(f"{a} {key}", [((w.get("fairness") or {}).get(a) or {}).get(key) for w in ws], style)
                      for a in attrs for key, style in (("equalized_odds_difference", "solid"),
                                                        ("demographic_parity_difference", "dashed"))]
            out.append(("Fairness gaps per window", line_chart(idx, series)))
    return out


def render_html(m: dict) -> str:
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    return env.from_string(_TEMPLATE).render(m=m, plots=plots(m), marker=MARKER)


def write_outputs(m: dict, out: Path) -> dict:
    """Write ``monitor.json`` and ``monitor.html`` into ``out``; both destinations are checked before either is
    written (no symlinks, no file tfresp monitor did not write)."""
    from tfresp.run.io import atomic_write, check_writable

    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ConfigError([("--out", str(out), "must be a directory (not a link or a file)")])
    json_path, html_path = out / "monitor.json", out / "monitor.html"
    check_writable([json_path, html_path], "--out", owned_marker=MARKER)
    html = render_html(m)
    text = json.dumps(_clean(m), indent=1, allow_nan=False, default=_default)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(json_path, text)
    atomic_write(html_path, html)
    return {"json": str(json_path), "html": str(html_path)}


def _default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)


def _clean(o):
    """NaN/inf become null (JSON has no NaN); containers recursively."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and (o != o or o in (float("inf"), float("-inf"))):
        return None
    return o
