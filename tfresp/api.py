"""``tfresp.fit``: the Python front of the builder."""
from __future__ import annotations

import os

from tfresp.config import load_config


def fit(config=None, *, data=None, out=None, overwrite: bool = False, quiet: bool = False,
        resume: bool = False, overrides=None, **kwargs):
    """Train, audit, export and report in one run.

    Args:
        config: YAML path, dict, or :class:`~tfresp.config.RunConfig` (None: all defaults, i.e. Adult).
        data: optional in-memory data (DataFrame, dict of columns, or ``(X, y)``) replacing ``data.source``.
        out: run directory (default ``runs/<name>``).
        overwrite: replace an existing run directory (only after the new run succeeded).
        quiet: no progress bar.
        overrides: ``["train.epochs=3", ...]`` like the CLI's ``--set``.
        **kwargs: config sections or dotted keys, e.g. ``train={"epochs": 3}``, ``privacy={"target_epsilon": 3}``.

    Returns:
        :class:`~tfresp.builder.RunResult` with the model, history, test metrics, report and paths.

    Example:
        >>> result = tfresp.fit("configs/quickstart.yaml", train={"epochs": 2}, out="runs/demo")
        >>> result.metrics["accuracy"]
    """
    if data is not None:
        kwargs.setdefault("data", {})
        if isinstance(kwargs["data"], dict):
            kwargs["data"] = {"source": "memory", **kwargs["data"]}
    cfg = load_config(config, overrides=overrides, **kwargs)
    from tfresp import rundir  # path problems too are reported before TensorFlow is imported

    protect = [cfg.data.source] + ([config] if isinstance(config, (str, os.PathLike)) else [])
    rundir.check_target(rundir.resolve_out(out if out is not None else cfg.out, cfg.name), overwrite, resume,
                        protect=protect)
    from tfresp.builder import build_and_run  # imports TensorFlow: after the config is known to be valid

    return build_and_run(cfg, out=out, overwrite=overwrite, quiet=quiet, memory=data, resume=resume)
