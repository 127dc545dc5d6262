"""Monitoring after deployment: drift, performance and fairness of a released run on new batches.

At fit time :func:`tfresp.monitoring.profile.write_reference` writes ``RUN/monitor/reference.json`` (a coarse profile
of a held-out split as scored by the exported SavedModel). :func:`monitor` scores new batches with the run's
SavedModel and compares each window with that profile.

Example:
    >>> import tfresp
    >>> result = tfresp.monitor("runs/adult", ["batch_01.csv", "batch_02.csv"], labels="income", window=2000)
    >>> result["summary"]["gates_failed"], result["summary"]["drift_alarms"]
"""
from tfresp.monitoring.run import monitor  # noqa: F401

__all__ = ["monitor"]
