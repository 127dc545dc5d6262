"""``tfresp export RUN --tflite int8|float16|float|dynamic``: add TFLite variants to a finished run.

The model exported is exactly the one the run serves: the core restored from
``RUN/saved_model`` (pruning wrappers were stripped before it was saved). The data are
re-prepared from ``RUN/config.yaml`` (same seed, same splits), so the int8 calibration uses
training rows and accuracy / group gap / round trip are measured on the run's test split.
Results are merged into ``RUN/report.json`` (``compression.<variant>``,
``export.tflite.<variant>``) and the Markdown/HTML reports are re-rendered.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from tfresp.errors import CheckpointError, ConfigError, DataError


def _restored_core(run_dir: Path):
    path = run_dir / "saved_model"
    if not (path / "saved_model.pb").is_file():
        raise CheckpointError(f"Invalid value for `RUN`: {str(run_dir)!r} has no saved_model/ (was the run "
                              "fitted with export.saved_model: false?). Re-run `tfresp fit` with it on.")
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # corrupted or foreign SavedModel
        raise CheckpointError(f"Invalid value for `RUN`: cannot load {str(path)!r} "
                              f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})") from None
    core = getattr(loaded, "core", None)
    if core is None:
        raise CheckpointError(f"Invalid value for `RUN`: {str(path)!r} is not a tfresp SavedModel (no `core`)")
    return loaded, core


def _check_writable_run(run_dir: Path, files) -> None:
    """Before any work: the run dir must be writable and no destination a symlink."""
    from tfresp.run.io import check_writable, probe_writable

    check_writable(files, "RUN")
    if not probe_writable(run_dir):
        raise DataError(f"`RUN`: the run directory is read-only; export writes model files into it. Received: "
                        f"run={str(run_dir)!r}. Remedy: copy the run to a writable place")


def export_run(run_dir, variants, quiet: bool = False, data=None) -> dict:
    """Export ``variants`` of a finished run; return the updated report's ``compression`` section.

    ``data``: the DataFrame of a run trained on in-memory data (checked against the recorded digest)."""
    from tfresp.config import load_config
    from tfresp.run.context import predict_proba
    from tfresp.data.dataset import prepare, saved_preprocessor
    from tfresp.export.tflite import VARIANTS, calibration_rows, export_variant, private_int8_problems
    from tfresp.report.compare import load_report
    from tfresp.report.writer import _jsonable, write_files
    from tfresp.run.run_data import check_prepared, verify_source

    run_dir = Path(run_dir)
    bad = [v for v in variants if v not in VARIANTS]
    if not variants or bad:
        raise ConfigError([("--tflite", bad or variants, f"one or more of {list(VARIANTS)}")])
    if not run_dir.is_dir() or not (run_dir / "report.json").is_file() or not (run_dir / "config.yaml").is_file():
        raise CheckpointError(f"Invalid value for `RUN`: {str(run_dir)!r} is not a finished tfresp run "
                              "(expected report.json and config.yaml)")
    _check_writable_run(run_dir, [run_dir / f"model_{v}.tflite" for v in variants]
                        + [run_dir / f for f in ("report.json", "report.md", "report.html")])
    report = load_report(run_dir)
    from tfresp.federated.sites_report import refuse_rows

    refuse_rows(run_dir, report, "export")  # a sites run's rows stay at the sites
    config = load_config(run_dir / "config.yaml")
    if config.task != "classification":
        raise ConfigError([("task", config.task, "TFLite export supports classification runs")])
    refused = private_int8_problems(config, variants)  # before re-reading any private row
    if refused:
        raise ConfigError(refused)
    verify_source(run_dir, config, report, memory=data)
    data = prepare(config, memory=data, preprocessor=saved_preprocessor(run_dir))  # the run's own encoding
    check_prepared(run_dir, data, report)
    expected = (((report.get("data") or {}).get("splits") or {}).get("test") or {}).get("rows")
    if expected is not None and int(expected) != len(data.test):
        raise DataError(f"Invalid value for `RUN`: the run's test split had {expected} rows but re-preparing its "
                        f"data gives {len(data.test)}; the data source changed since the run")
    _, core = _restored_core(run_dir)
    reference = predict_proba(core, data.test.x, batch_size=1024)
    params = int(sum(int(np.prod(v.shape)) for v in core.variables))
    comp = config.compression
    refused = private_int8_problems(config, variants, ((data.info or {}).get("files") or {}).values())
    if refused:
        raise ConfigError(refused)
    calibration = calibration_rows(config, data) if "int8" in variants else None
    section = report.get("compression") or {}
    exp = report.get("export") or {}
    for variant in dict.fromkeys(variants):
        res = export_variant(core, variant, data, run_dir / f"model_{variant}.tflite", reference_proba=reference,
                             calibration=calibration, latency_runs=comp.latency_runs if comp else 200,
                             private=config.privacy is not None, qat=bool(comp and comp.quantize == "qat"))
        res["parameters"] = params
        res["measured_by"] = "tfresp export"
        section[variant] = res
        exp.setdefault("tflite", {})[variant] = {"path": res["path"], "bytes": res["bytes"],
                                                 "roundtrip": res.get("roundtrip")}
        if not quiet:
            rt = res.get("roundtrip") or {}
            print(f"tfresp: {res['path']}: {res['bytes']} bytes (gzip {res['gzip_bytes']}), accuracy "
                  f"{res['accuracy']:.4f}, p50 {res['latency_ms_p50']:.4f} ms, round trip "
                  f"{'ok' if rt.get('passed') else 'OUTSIDE TOLERANCE'} (max |dp| {rt.get('max_abs_diff', 0):.2e})")
    report["compression"] = section
    report["export"] = exp
    from tfresp.report.manifest import refresh

    refresh(report, run_dir, [f"model_{v}.tflite" for v in variants] + ["plots/"])  # what this command wrote
    write_files(run_dir, _jsonable(report))
    return section


def run(args) -> int:
    export_run(args.run, list(args.tflite))
    return 0
