"""tfresp: responsible training for Keras/TensorFlow.

One call, :func:`tfresp.fit`, trains a model and in the same run makes it private, fair,
robust, explainable and compact, exports it and writes an audit-ready report.

The environment switch below must run before anything imports ``tf.keras``:
tensorflow-model-optimization and transformers' TF models only work with Keras 2 (``tf_keras``).
"""
import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from tfresp.errors import (  # noqa: E402
    BudgetExhaustedError,
    ConfigError,
    DataError,
    GateFailedError,
    IncompatibleModelError,
    TfrespError,
)


def fit(config=None, **kwargs):
    """Train, audit, export and report in one run. See :func:`tfresp.api.fit`."""
    from tfresp.api import fit as _fit

    return _fit(config, **kwargs)


def monitor(run_dir, batches, **kwargs):
    """Monitor a released run on new batches (drift, performance, fairness, gates). See :func:`tfresp.monitoring.run.monitor`."""
    from tfresp.monitoring.run import monitor as _monitor

    return _monitor(run_dir, batches, **kwargs)


def load_config(config=None, overrides=None, **kwargs):
    """Resolve a config from a path, dict, or RunConfig plus ``key=value`` overrides."""
    from tfresp.config import load_config as _load

    return _load(config, overrides=overrides, **kwargs)


__all__ = [
    "fit",
    "monitor",
    "load_config",
    "TfrespError",
    "ConfigError",
    "DataError",
    "IncompatibleModelError",
    "BudgetExhaustedError",
    "GateFailedError",
]
