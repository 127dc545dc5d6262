"""``tfresp.fit``: the Python front of the builder."""
from __future__ import annotations

import os

from tfresp.config import load_config
from tfresp.errors import ConfigError, DataError

#: the label column name of ``(X, y)`` data (see ``tfresp.data.sources.load_memory``)
ARRAY_LABEL = "label"


def _is_tf_dataset(data) -> bool:
    # checked by type name so that `import tfresp` and config errors stay free of TensorFlow
    return any(c.__module__.startswith("tensorflow") and c.__name__ == "DatasetV2" for c in type(data).__mro__)


def dataset_to_arrays(ds):
    """``(X, y)`` numpy arrays from a finite ``tf.data.Dataset`` of ``(x, y)`` rows or batches (tabular).

    The cardinality must be known and finite (declare it with
    ``ds.apply(tf.data.experimental.assert_cardinality(n))``) so tfresp knows the data ends and how many
    elements it reads.
    """
    import numpy as np
    import tensorflow as tf

    card = int(ds.cardinality())
    if card == int(tf.data.INFINITE_CARDINALITY):
        raise DataError("Invalid value for argument `data`: the tf.data.Dataset is infinite (repeat()). Received: "
                        "cardinality=infinite. Remedy: pass one pass over the data (drop .repeat())")
    if card < 0:
        raise DataError("Invalid value for argument `data`: the tf.data.Dataset has an unknown number of elements. "
                        "Received: cardinality=unknown. Remedy: declare it with "
                        "ds.apply(tf.data.experimental.assert_cardinality(n)) or pass (X, y) arrays")
    spec = ds.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(s, tf.TensorSpec) for s in spec)):
        raise DataError("Invalid value for argument `data`: tfresp.fit reads a tf.data.Dataset of (x, y) tensors "
                        f"(tabular rows or batches). Received: element_spec={spec!r}. Remedy: map it to (x, y); "
                        "put sensitive attributes and weights in a DataFrame instead")
    xr, yr = spec[0].shape.rank, spec[1].shape.rank
    if (xr, yr) not in ((1, 0), (2, 1)):
        raise DataError("Invalid value for argument `data`: expected (x, y) with x of rank 1 and y a scalar per "
                        f"row (or batches of them). Received: x rank {xr}, y rank {yr}. Remedy: flatten x or pass "
                        "a model-ready source (tfresp's data layer encodes tabular rows)")
    xs, ys = zip(*ds.as_numpy_iterator()) if card else ((), ())
    if not xs:
        raise DataError("Invalid value for argument `data`: the tf.data.Dataset is empty")
    stack = np.stack if xr == 1 else np.concatenate
    return stack(xs), stack(ys)


def fit(config=None, *, model=None, data=None, out=None, overwrite: bool = False, quiet: bool = False,
        resume: bool = False, overrides=None, **kwargs):
    """Train, audit, export and report in one run.

    Args:
        config: YAML path, dict, or :class:`~tfresp.config.RunConfig` (None: all defaults, i.e. Adult).
        model: your own ``keras.Model`` (outputs logits or probabilities, one column per class), or a builder
            ``fn(input_spec) -> keras.Model`` that receives :class:`~tfresp.models.user.InputSpec` (encoded input
            shape, classes) and is called inside the distribution strategy's scope. Sets ``model.kind: keras``.
        data: in-memory data replacing ``data.source``: a DataFrame or dict of columns (``data.label`` names
            the label), ``(X, y)`` arrays (label ``y``), or a finite ``tf.data.Dataset`` of ``(x, y)``
            (read into arrays; refused under ``privacy``, which needs random access to one-record rows).
        out: run directory (default ``runs/<name>``).
        overwrite: replace an existing run directory (only after the new run succeeded).
        quiet: no progress bar.
        overrides: ``["train.epochs=3", ...]`` like the CLI's ``--set``.
        **kwargs: config sections or dotted keys, e.g. ``train={"epochs": 3}``, ``privacy={"target_epsilon": 3}``.

    Returns:
        :class:`~tfresp.run.builder.RunResult` with the model, history, test metrics, report and paths.

    Example:
        >>> result = tfresp.fit("configs/quickstart.yaml", train={"epochs": 2}, out="runs/demo")
        >>> result.metrics["accuracy"]
    """
    is_dataset = data is not None and _is_tf_dataset(data)
    if data is not None:
        section = {"source": "memory"}
        if is_dataset or (isinstance(data, (tuple, list)) and len(data) == 2):
            section["label"] = ARRAY_LABEL  # y is the label, whatever the config's data.label says
        kwargs.setdefault("data", {})
        if isinstance(kwargs["data"], dict):
            kwargs["data"] = {**section, **kwargs["data"]}
    if model is not None:
        kwargs.setdefault("model", {})
        if isinstance(kwargs["model"], dict):
            kwargs["model"] = {**kwargs["model"], "kind": "keras"}
    cfg = load_config(config, overrides=overrides, **kwargs)
    if cfg.model.kind == "keras" and model is None:
        raise ConfigError([("model.kind", "keras", "'keras' needs your model: tfresp.fit(config, model=...)")])
    if is_dataset and cfg.privacy is not None:
        from tfresp.privacy.private import DATASET_REFUSAL

        raise DataError(f"Invalid value for argument `data`: a tf.data.Dataset cannot be used with `privacy`. "
                        f"{DATASET_REFUSAL}. Received: data={type(data).__name__}. Remedy: pass the rows as (X, y) "
                        "arrays or a DataFrame with one record per row")
    from tfresp.run import rundir  # path problems too are reported before TensorFlow is imported

    protect = [cfg.data.source] + ([config] if isinstance(config, (str, os.PathLike)) else [])
    rundir.check_target(rundir.resolve_out(out if out is not None else cfg.out, cfg.name), overwrite, resume,
                        protect=protect)
    if is_dataset:
        data = dataset_to_arrays(data)
    from tfresp.run.builder import build_and_run  # imports TensorFlow: after the config is known to be valid

    return build_and_run(cfg, out=out, overwrite=overwrite, quiet=quiet, memory=data, resume=resume, model=model)
