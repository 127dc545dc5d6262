"""``tfresp audit RUN [--robustness] [--privacy] [--fairness]``: re-run audits on a finished run.

The data are re-prepared from ``RUN/config.yaml`` (same seed, same splits) and the served model is
rebuilt from the config with its weights copied by name from ``RUN/saved_model`` (falling back to
the restored SavedModel core). Each audit's section replaces the one in ``RUN/report.json`` and the
Markdown/HTML reports are re-rendered.

Audits are registered in :data:`AUDITS` (``name -> fn(run_dir, config, data, core, report) -> section``)
so other concerns add theirs without touching this command's flow. Each recomputes its section with the same
code as the run (:mod:`tfresp.fairness.audit`, :mod:`tfresp.robustness.audit`, :mod:`tfresp.privacy.mia`); for a
model outside any run, use :mod:`tfresp.audits` (``tfresp.audit(model, data=..., groups=...)``).
"""
from __future__ import annotations

import contextlib
import copy
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict

from tfresp.errors import CheckpointError, ConfigError, DataError

AUDITS: Dict[str, Callable] = {}


def register_audit(name: str):
    """Decorator adding a re-runnable audit under ``--<name>``."""

    def deco(fn):
        AUDITS[name] = fn
        return fn

    return deco


def load_run(run_dir, memory=None, data_file=None):
    """``(config, data, core, report)`` of a finished run; the core is a Keras model when rebuildable.

    The data are re-prepared only if they are the ones the run recorded (sha256, :mod:`tfresp.run.run_data`);
    ``memory`` is the DataFrame of an in-memory run. Data files are found where the run recorded them, also
    after the run directory moved (:mod:`tfresp.run.relocate`); ``data_file`` (``--data``) names the source file."""
    import tensorflow as tf

    from tfresp.config import load_config
    from tfresp.data.dataset import prepare, saved_preprocessor
    from tfresp.models.cnn import saved_model_variables
    from tfresp.models.registry import build_core
    from tfresp.report.compare import load_report
    from tfresp.run.run_data import check_prepared, verify_source

    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not (run_dir / "report.json").is_file() or not (run_dir / "config.yaml").is_file():
        raise CheckpointError(f"Invalid value for `RUN`: {str(run_dir)!r} is not a finished tfresp run "
                              "(expected report.json and config.yaml)")
    report = load_report(run_dir)
    from tfresp.federated.sites_report import refuse_rows

    refuse_rows(run_dir, report, "audit")  # a sites run's rows stay at the sites
    config = load_config(run_dir / "config.yaml")
    if memory is None:
        from tfresp.run.relocate import locate

        config = locate(run_dir, config, report, source=data_file)
    verify_source(run_dir, config, report, memory)
    data = prepare(config, memory=memory, preprocessor=saved_preprocessor(run_dir))  # the run's own encoding
    check_prepared(run_dir, data, report)
    expected = (((report.get("data") or {}).get("splits") or {}).get("test") or {}).get("rows")
    if expected is not None and int(expected) != len(data.test):
        raise DataError(f"Invalid value for `RUN`: the run's test split had {expected} rows but re-preparing its "
                        f"data gives {len(data.test)}; the data source changed since the run")
    try:
        variables = saved_model_variables(run_dir)
    except CheckpointError as exc:
        raise CheckpointError(str(exc).replace("`model.checkpoint`", "`RUN`")) from None
    rebuilt = copy.deepcopy(config)
    rebuilt.model.checkpoint = None
    rebuilt.model.freeze = None
    try:
        core = build_core(rebuilt, data)
        names = [v.name for v in core.variables]
        if sorted(names) != sorted(variables) or any(
                tuple(variables[n].shape) != tuple(v.shape) for n, v in zip(names, core.variables)):
            raise ValueError("variables differ")
        for v in core.variables:
            v.assign(variables[v.name])
    except (ValueError, ConfigError):  # e.g. a model whose export renamed variables: use the restored core
        core = tf.saved_model.load(str(run_dir / "saved_model")).core
    return config, data, core, report


@register_audit("robustness")
def _robustness(run_dir, config, data, core, report):
    from tfresp.run.context import compose
    from tfresp.robustness.concern import robustness_audit
    from tfresp.robustness.config import RobustnessConfig

    cfg = config.robustness or RobustnessConfig()
    ctx = compose(config, data, run_dir, core=core, quiet=True)  # + typed values (a text model's embedding split)
    section = robustness_audit(ctx, cfg)
    old = report.get("robustness") or {}
    if "training_time" in old:  # measured during fit; cannot be re-measured without the training objective
        section["training_time"] = old["training_time"]
    section["audited_by"] = "tfresp audit --robustness"
    return section


@register_audit("fairness")
def _fairness(run_dir, config, data, core, report):
    from tfresp.fairness.concern import rerun_audit

    return rerun_audit(run_dir, config, data, core, report)


@register_audit("privacy")
def _privacy(run_dir, config, data, core, report):
    from tfresp.privacy.mia import rerun_audit

    return rerun_audit(run_dir, config, data, core, report)


def audit_run(run_dir, names=None, data=None, data_file=None) -> dict:
    """Re-run the named audits (default: all registered) on a run; return the updated report.

    Args:
        run_dir: a finished run directory.
        names: audits to run (default: all registered).
        data: the DataFrame of a run trained on in-memory data (checked against the recorded digest).
        data_file: the run's data file when it is not found where the run recorded it (``--data``).

    On a read-only run directory the audits still run and the updated report is returned (not written).
    """
    from tfresp.commands.report import REPORT_FILES
    from tfresp.run.io import check_writable, probe_writable
    from tfresp.report.writer import _jsonable, write_files

    names = list(names or AUDITS)
    unknown = [n for n in names if n not in AUDITS]
    if unknown:
        raise ConfigError([("audit", unknown, f"audits available in this version: {sorted(AUDITS)}")])
    run_dir = Path(run_dir)
    check_writable([run_dir / f for f in REPORT_FILES], "RUN")
    config, data, core, report = load_run(run_dir, memory=data, data_file=data_file)
    with contextlib.ExitStack() as stack:
        work = run_dir
        if not probe_writable(run_dir):  # audits write plots: give them a scratch view of the run
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tfresp-audit-")))
            for entry in run_dir.iterdir():
                if entry.name != "plots":
                    (work / entry.name).symlink_to(entry.resolve())
            (work / "plots").mkdir()
        for name in names:
            report[name] = _jsonable(AUDITS[name](work, config, data, core, report))
        if work is run_dir:
            from tfresp.report.manifest import refresh

            refresh(report, run_dir, ["plots/"])  # the audits redrew their plots: record the new digests
            write_files(run_dir, report)
        else:
            print(f"tfresp: note: {run_dir} is read-only; the audit ran but report files were not updated",
                  file=sys.stderr)
    return report


def run(args) -> int:
    from tfresp.run.io import probe_writable

    requested = [n for n in ("robustness", "privacy", "fairness") if getattr(args, n, False)]
    writable = not Path(args.run).is_dir() or probe_writable(args.run)
    report = audit_run(args.run, requested or None, data_file=getattr(args, "data", None))
    rob = report.get("robustness")
    if rob and ("robustness" in requested or not requested):
        eps = rob.get("epsilons", [])
        print(f"tfresp: robustness clean accuracy={rob['clean_accuracy']:.4f}; " + ", ".join(
            f"pgd@{e:g}={rob[f'pgd@{e:g}']['accuracy']:.4f}" for e in eps))
        for w in rob.get("warnings", []):
            print(f"tfresp: warning: {w}")
    if writable:
        print(f"tfresp: report updated in {Path(args.run) / 'report.json'}")
    return 0
