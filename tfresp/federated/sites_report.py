"""The run directory of a sites run (``federated.sites``): the same artifacts as a central run.

:func:`write_run` writes, into the run's staging directory: ``config.yaml``, ``preprocessing/`` (the DECLARED
preprocessor: fitted on nothing, so it is fully determined by the config), ``model.keras``, a SavedModel on raw
inputs (``saved_model/``: the declared preprocessing + the global model, ``serving_default`` takes the raw
columns, so ``tfresp.load(RUN).predict_rows(rows)`` serves raw rows) with its input layout, then the manifest
(sha256 of every artifact, :mod:`tfresp.report.manifest`, the same code as central runs), ``report.json``,
``report.md`` (model-card metadata + the sites report) and ``report.html`` (:mod:`tfresp.report.html`).

The report carries the evaluation COUNTS each site sent (``federated.counts``: label x prediction cells, per
sensitive group, summed loss; per site, test and validation per round), recorded by :class:`RecordingSites`
around the transport, so ``tfresp verify`` can re-derive every pooled and per-site metric from them. The counts
were already released through the metrics (the confusion matrix and every group's rates and size are in the
report); the rows themselves stay at the sites.

The SavedModel's round trip is checked on PROBE rows built from the declared schema alone (:func:`probe_frame`:
every declared category, numeric values across each declared range): no site row reaches the server.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pandas as pd

SITES_SCHEMA = "sites-1"
NOT_RUN_EXPORT = "SavedModel serving export"


def is_sites_report(report) -> bool:
    """True for the report.json of a sites run."""
    return isinstance(report, dict) and str(report.get("schema_version", "")).startswith("sites-")


#: why a command that needs the run's rows cannot run on a sites run, and what to do instead
REFUSALS = {
    "audit": ("the membership-inference, fairness and robustness audits run on rows", "read the per-site and "
              "pooled evaluation (with the data.sensitive gaps) in report.json's federated section; `tfresp verify "
              "RUN` re-derives it from the counts the sites sent"),
    "explain": ("explaining a row of the run's test split needs that row", "explain rows you hold yourself: "
                "tfresp.explain.lime_explain.TabularLime on tfresp.load(RUN)"),
    "export": ("a TFLite variant is measured (accuracy, round trip) on the run's test rows and int8 is calibrated "
               "on training rows", "serve saved_model/ (tfresp.load(RUN)), or convert it yourself with "
               "tf.lite.TFLiteConverter.from_saved_model (unmeasured)"),
}


def refuse_rows(run_dir, report, command: str) -> None:
    """A :class:`~tfresp.errors.DataError` (exit 2) when ``report`` is a sites run's: ``command`` needs rows."""
    from tfresp.errors import DataError

    if not is_sites_report(report):
        return
    why, remedy = REFUSALS[command]
    raise DataError(f"`RUN`: `tfresp {command}` cannot run on a sites run (federated.sites): {why}, and a sites "
                    f"run's rows stay at the sites. Received: run={str(run_dir)!r}. Remedy: {remedy}")


class RecordingSites:
    """A site transport that records the evaluation counts every site sent (and delegates everything)."""

    def __init__(self, inner):
        self._inner = inner
        self._round = 0
        self.validation: Dict[int, Dict[str, Optional[dict]]] = {}
        self.test: Dict[str, Optional[dict]] = {}

    def __getattr__(self, name):  # names, description and any other attribute of the wrapped transport
        if name.startswith("__") or name == "_inner":
            raise AttributeError(name)
        value = getattr(self._inner, name)
        if name == "fit_round":  # a deployment fits every sampled site at once: note the round first
            def fit_round(names, weights, rnd, *args, **kwargs):
                self._round = int(rnd)
                return value(names, weights, rnd, *args, **kwargs)
            return fit_round
        return value

    def fit(self, name, weights, rnd):
        self._round = int(rnd)
        return self._inner.fit(name, weights, rnd)

    def evaluate(self, name, weights, split):
        counts = self._inner.evaluate(name, weights, split)
        if split == "validation":
            self.validation.setdefault(self._round, {})[name] = counts
        else:
            self.test[name] = counts
        return counts

    def privacy(self, name):
        return self._inner.privacy(name)

    def counts(self) -> dict:
        return {"note": "the counts each site sent for the global model on its own held-out rows (rows, summed "
                        "loss, confusion[label][prediction], groups[attribute][value] = [[tn, fp], [fn, tp]]); "
                        "every pooled and per-site metric of this report is computed from them",
                "test": dict(self.test),
                "validation": [{"round": r, "sites": dict(v)} for r, v in sorted(self.validation.items())]}


# -- probe rows and the SavedModel ----------------------------------------------------------------------------
def probe_frame(config, rows: int = 12) -> pd.DataFrame:
    """Rows built from the declared schema only: each categorical column cycles through its declared values,
    each numeric column runs across (and just beyond) its declared range. Public: no site row is used."""
    from tfresp.federated import schema

    dc = config.data
    cats, ranges = dc.categories or {}, dc.numeric_ranges or {}
    features = schema.feature_columns(config)
    n = max([rows] + [len(cats[c]) for c in features if c in cats])
    out = {}
    for c in features:
        if c in cats:
            values = [str(v) for v in cats[c]]
            out[c] = [values[i % len(values)] for i in range(n)]
        else:
            lo, hi = (float(v) for v in ranges[c])
            out[c] = np.linspace(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), n)
    return pd.DataFrame(out)


def export_saved_model(config, pre, core, run_dir: Path) -> dict:
    """``run_dir/saved_model`` (declared preprocessing + ``core``, raw inputs) and its layout file; the round trip
    against ``core`` on :func:`probe_frame` rows. Returns the report's ``export.saved_model`` section."""
    from tfresp.export.saved_model import ServingModule, save_module, serving_layout, write_layout
    from tfresp.federated import schema
    from tfresp.run.context import predict_proba

    layout = serving_layout(pre)
    module = ServingModule(pre, core, schema.classes(config), None, layout)
    path = save_module(module, dict(pre.input_signature()), Path(run_dir) / "saved_model")
    write_layout(module.layout, run_dir)
    probe = probe_frame(config)
    served = serve_probe(str(path), pre, probe)
    direct = predict_proba(core, pre.transform_frame(probe), batch_size=4096)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    layout = module.layout
    return {"path": "saved_model", "signature": "serving_default",
            "inputs": {name: layout["dtypes"][raw] for raw, name in layout["inputs"].items()},
            "renamed_inputs": {raw: name for raw, name in layout["inputs"].items() if raw != name},
            "layout_file": "preprocessing/serving_inputs.json",
            "outputs": ["logits", "probabilities", "class_id", "class_name"],
            "preprocessing": "the declared schema (data.categories, data.numeric_ranges): fitted on no row",
            "roundtrip_on": "probe rows built from the declared schema (no site row reaches the server)",
            "roundtrip_rows": int(len(probe)),
            "roundtrip_max_abs_diff": float(np.max(np.abs(served[0] - direct))),
            "roundtrip_class_id_mismatches": int(np.sum(served[1] != direct.argmax(axis=1))),
            "bytes": int(size)}


def serve_probe(path: str, pre, frame: pd.DataFrame):
    """``(probabilities, class_id)`` of the SavedModel at ``path`` on raw ``frame`` rows."""
    import tensorflow as tf

    from tfresp.export.saved_model import raw_inputs

    sig = tf.saved_model.load(path).signatures["serving_default"]
    out = sig(**raw_inputs(pre, frame))
    return out["probabilities"].numpy().astype(np.float32), out["class_id"].numpy()


# -- writing --------------------------------------------------------------------------------------------------
def fairness_section(pooled: Optional[dict]) -> Optional[dict]:
    """The report's top-level ``fairness`` section (the layout central runs use: gaps per attribute and
    ``by_group`` rates) from the POOLED test counts, so report.html, the model card and ``tfresp compare`` show
    the sensitive-group gaps. None without ``data.sensitive`` (or for a multi-class task)."""
    fair = (pooled or {}).get("fairness")
    if not isinstance(fair, dict) or not fair:
        return None
    return {attr: {**(sec.get("gaps") or {}), "by_group": sec.get("groups") or {},
                   "computed_from": "the summed test counts of every site (federated.counts.test); no intervals"}
            for attr, sec in fair.items()}


def write_run(stage: Path, config, report: dict, pre, core, counts: Optional[dict], body) -> dict:
    """Every artifact of a sites run into ``stage`` (see the module docstring); returns the report written.
    ``body(report) -> str``: the sites report's Markdown (:func:`tfresp.federated.sites_run.markdown`)."""
    from tfresp.report import manifest

    stage = Path(stage)
    rc = config.report
    import datetime as _dt

    run = report.setdefault("run", {})
    run.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    for key in ("intended_use", "out_of_scope", "description", "limitations", "license"):
        run.setdefault(key, getattr(rc, key, None))
    fed = report.get("federated") or {}
    if counts is not None:
        fed["counts"] = counts
    (stage / "config.yaml").write_text(config.to_yaml())
    pre.save(stage / "preprocessing")
    core.save(stage / "model.keras")
    report["export"] = {"saved_model": export_saved_model(config, pre, core, stage)}
    fair = fairness_section((report.get("evaluation") or {}).get("test"))
    if fair is not None and report.get("fairness") is None:
        report["fairness"] = fair
    if isinstance(fed.get("not_run"), list):
        fed["not_run"] = [x for x in fed["not_run"] if x != NOT_RUN_EXPORT]
    report["manifest"] = manifest.build(stage)  # every artifact's sha256 (`tfresp verify` hashes them again)
    report = _plain(report)
    write_report_files(stage, report, body)
    return report


def _plain(obj):
    """JSON-ready: numpy scalars to Python numbers, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_report_files(run_dir: Path, report: dict, body) -> None:
    """report.json, report.md and (``report.html``, unless the config turns it off) report.html."""
    from tfresp.run.io import atomic_write

    run_dir = Path(run_dir)
    atomic_write(run_dir / "report.json", json.dumps(report, indent=2, allow_nan=False))
    atomic_write(run_dir / "report.md", render_markdown(report, body))
    if (((report.get("run") or {}).get("config") or {}).get("report") or {}).get("html", True):
        from tfresp.report.html import render_html

        atomic_write(run_dir / "report.html", render_html(report, run_dir))


def render_markdown(report: dict, body) -> str:
    """The model card: its YAML metadata (:func:`tfresp.report.markdown.model_card_header`), the sites report,
    and how to check it."""
    import yaml

    from tfresp.report.markdown import model_card_header

    header = yaml.safe_dump(model_card_header(report), sort_keys=False, allow_unicode=True)
    text = body(report)
    files = ((report.get("manifest") or {}).get("files") or {})
    tail = ["", "## Artifacts", ""]
    if (report.get("export") or {}).get("saved_model"):
        tail.append("- `saved_model/`: serving_default on the raw columns (declared preprocessing inside the graph); "
                    "`tfresp.load(RUN).predict_rows(rows)`")
    tail.append(f"- manifest: sha256 of {len(files)} artifact file(s) in report.json; `tfresp verify RUN` hashes "
                "them again, re-derives ε per site with dp-accounting and every pooled / per-site metric from the "
                "counts the sites sent")
    return f"---\n{header}---\n\n{text}" + "\n".join(tail) + "\n"


def rerender(run_dir, body, write: bool = True) -> dict:
    """``tfresp report RUN`` on a sites run: report.md / report.html again from report.json (nothing else);
    ``body``: as in :func:`write_run`."""
    from tfresp.report.compare import load_report
    from tfresp.run.io import check_writable, refuse_read_only_rerender

    run_dir = Path(run_dir)
    check_writable([run_dir / f for f in ("report.md", "report.html")], "run")
    report = load_report(run_dir)
    if write:
        from tfresp.run.io import atomic_write

        try:
            atomic_write(run_dir / "report.md", render_markdown(report, body))
            if (((report.get("run") or {}).get("config") or {}).get("report") or {}).get("html", True):
                from tfresp.report.html import render_html

                atomic_write(run_dir / "report.html", render_html(report, run_dir))
        except OSError as exc:
            refuse_read_only_rerender(exc, run_dir, "tfresp verify RUN")
    return report
