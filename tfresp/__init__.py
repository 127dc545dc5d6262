"""tfresp: responsible training for Keras/TensorFlow.

One call, :func:`tfresp.fit`, trains a model and in the same run makes it private, fair,
robust, explainable and compact, exports it and writes an audit-ready report.

The environment switch below must run before anything imports ``tf.keras``:
tensorflow-model-optimization and transformers' TF models only work with Keras 2 (``tf_keras``).
"""
import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
from tfresp import _quiet  # noqa: E402  (records the user's TF_CPP_MIN_LOG_LEVEL before the default below)

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from tfresp._quiet import library_call as _library_call  # noqa: E402  (no TensorFlow import)
from tfresp.errors import (  # noqa: E402
    BudgetExhaustedError,
    ConfigError,
    DataError,
    GateFailedError,
    IncompatibleModelError,
    TfrespError,
)


@_library_call
def fit(config=None, **kwargs):
    """Train, audit, export and report in one run. See :func:`tfresp.api.fit`."""
    from tfresp.api import fit as _fit

    return _fit(config, **kwargs)


@_library_call
def monitor(run_dir, batches, **kwargs):
    """Monitor a released run on new batches (drift, performance, fairness, gates). See :func:`tfresp.monitoring.run.monitor`."""
    from tfresp.monitoring.run import monitor as _monitor

    return _monitor(run_dir, batches, **kwargs)


def load_config(config=None, overrides=None, **kwargs):
    """Resolve a config from a path, dict, or RunConfig plus ``key=value`` overrides."""
    from tfresp.config import load_config as _load

    return _load(config, overrides=overrides, **kwargs)


def load(run_dir):
    """A finished run's served SavedModel, loaded with the ops it needs. See :func:`tfresp.serving.load`."""
    from tfresp.serving import load as _load

    return _load(run_dir)


@_library_call
def audit(run_or_model, audits=None, *, data=None, groups=None, options=None):
    """Audit a finished run or any trained ``keras.Model``; returns the (report-like) dict.

    ``tfresp.audit(run_dir, audits)`` re-runs audits on a run directory (``data``: the DataFrame of an in-memory
    run) and updates its report. ``tfresp.audit(model, data=(x, y) or {"test": (x, y), "train": (x, y)},
    groups=..., audits=[...])`` runs :mod:`tfresp.audits` (performance, fairness, robustness, membership) on the
    model; ``options``: ``{audit_name: {keyword: value}}``.
    """
    import os

    if isinstance(run_or_model, (str, os.PathLike)):
        from tfresp.commands.audit import audit_run

        if groups is not None or options is not None:
            raise ConfigError([("groups" if groups is not None else "options", "given", "only for "
                                "tfresp.audit(model, ...); a run audits its own sensitive columns and config")])
        return audit_run(run_or_model, audits, data=data)
    from tfresp.audits import audit_model

    if data is None:
        raise ConfigError([("data", None, "(x, y) rows to audit the model on, or {'test': (x, y), 'train': (x, y)}")])
    return audit_model(run_or_model, data, groups, audits, options)


@_library_call
def export(run_dir, tflite, *, data=None):
    """Add TFLite variants (``["int8", ...]``) to a finished run (``data``: the frame of an in-memory run)."""
    from tfresp.commands.export import export_run

    return export_run(run_dir, list(tflite), data=data)


#: Public Keras pieces, imported on first use (they import TensorFlow): ``tfresp.ResponsibleModel`` etc.
_LAZY = {
    "ResponsibleModel": ("tfresp.models.base", "ResponsibleModel"),
    "TfrespModel": ("tfresp.models.base", "TfrespModel"),
    "InputSpec": ("tfresp.models.user", "InputSpec"),
    "make_private": ("tfresp.privacy.private", "make_private"),
    "PrivacyLedger": ("tfresp.privacy.ledger", "PrivacyLedger"),
    "PruningScheduler": ("tfresp.compression.pruning_scheduler", "PruningScheduler"),
    "SparsitySchedule": ("tfresp.compression.schedule", "SparsitySchedule"),
    "terms": ("tfresp.terms", None),
    "audits": ("tfresp.audits", None),
}


#: public functions reached through ``tfresp.<name>`` that run inside the library's quiet scope
_QUIET_CALLS = {"make_private"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        value = mod if attr is None else getattr(mod, attr)
        return _library_call(value) if name in _QUIET_CALLS else value
    raise AttributeError(f"module 'tfresp' has no attribute {name!r}")


__all__ = [
    "fit",
    "load",
    "audit",
    "export",
    "monitor",
    *_LAZY,
    "load_config",
    "TfrespError",
    "ConfigError",
    "DataError",
    "IncompatibleModelError",
    "BudgetExhaustedError",
    "GateFailedError",
]
