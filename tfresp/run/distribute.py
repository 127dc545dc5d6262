"""Pick the ``tf.distribute`` strategy for ``config.distribute`` and describe its batch split.

``config.distribute``:

* ``none``: the default (single-device) strategy.
* ``mirrored``: :class:`tf.distribute.MirroredStrategy` over all GPUs, or over all logical CPUs when
  there is no GPU and several logical CPU devices are configured (tests, :func:`logical_cpus`).
* ``multi_worker``: :class:`tf.distribute.MultiWorkerMirroredStrategy`; needs ``TF_CONFIG``.
* ``tpu``: :class:`tf.distribute.TPUStrategy`; a :class:`~tfresp.errors.ConfigError` without a TPU.
* ``auto``: TPU when the runtime has one, multi-worker when ``TF_CONFIG`` names several workers,
  mirrored with more than one GPU, else the default strategy.

Batch sizes: ``train.batch_size`` is the *global* batch (what DP accounting's sampling rate and the
learning rate refer to); each of the ``R`` replicas gets ``batch_size / R`` rows. Keras splits a global
batch across replicas; ``ResponsibleModel.train_step`` divides each replica's mean loss by ``R`` because the
optimizer sums the replicas' gradients, so a step equals the single-device step on the same global
batch. Both sizes are reported under ``report.training``.

TPU discovery (Colab and Cloud TPU VMs): a TPU VM exposes its chips locally (``/dev/accel*`` or
``/dev/vfio``) and needs ``TPUClusterResolver(tpu="local")``; the older TPU-node runtime names the TPU
through ``TPU_NAME`` / ``COLAB_TPU_ADDR``. :func:`tpu_or_default` is the notebook helper that falls back
to the default strategy off TPU.
"""
from __future__ import annotations

import glob
import json
import logging
import math
import os
import secrets
from typing import Optional, Tuple

import tensorflow as tf

from tfresp.errors import ConfigError

log = logging.getLogger("tfresp")


def _tpu_vm() -> bool:
    return bool(glob.glob("/dev/accel*")) or os.path.isdir("/dev/vfio") and bool(os.environ.get("TPU_ACCELERATOR_TYPE"))


def _tpu_hint() -> bool:
    return bool(os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_NAME") or _tpu_vm())


def _tpu_resolver():
    """A TPU cluster resolver, or None off TPU. Never contacts a metadata server without a hint."""
    attempts = []
    if _tpu_vm():
        attempts.append({"tpu": "local"})  # Colab / Cloud TPU VMs (the current runtime)
    name = os.environ.get("TPU_NAME")
    if name:
        attempts.append({"tpu": name})
    if os.environ.get("COLAB_TPU_ADDR"):
        attempts.append({})  # legacy Colab TPU node: the resolver reads COLAB_TPU_ADDR itself
    for kwargs in attempts:
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(**kwargs)
            resolver.tfresp_local = kwargs.get("tpu") == "local"
            return resolver
        except (ValueError, RuntimeError, tf.errors.NotFoundError, tf.errors.UnavailableError) as exc:
            log.info("tfresp: TPUClusterResolver(%s) failed: %s", kwargs, exc)
    return None


def _tpu_strategy(resolver):
    if not getattr(resolver, "tfresp_local", False):  # a remote TPU node (legacy Colab / TPU_NAME)
        tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def tpu_or_default() -> Tuple[tf.distribute.Strategy, str]:
    """``(TPUStrategy, "tpu")`` on a TPU runtime, else ``(default strategy, "default")``.

    Example:
        >>> strategy, kind = tpu_or_default()
        >>> with strategy.scope():
        ...     model = build()
    """
    if _tpu_hint():
        resolver = _tpu_resolver()
        if resolver is not None:
            try:
                return _tpu_strategy(resolver), "tpu"
            except (ValueError, RuntimeError, tf.errors.OpError) as exc:
                log.warning("tfresp: TPU found but could not be initialised (%s); using the default strategy", exc)
    return tf.distribute.get_strategy(), "default"


def logical_cpus(n: int) -> None:
    """Split the host CPU into ``n`` logical devices (call before TensorFlow initialises its devices).

    For tests and CPU benchmarks of :class:`~tf.distribute.MirroredStrategy`.
    """
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * int(n))


def _workers_in_tf_config() -> int:
    tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        return 0
    try:
        cluster = json.loads(tf_config).get("cluster", {})
    except (json.JSONDecodeError, AttributeError):
        raise ConfigError([("TF_CONFIG", tf_config[:80], "is not valid JSON with a `cluster` mapping")]) from None
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def _mirrored():
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy()
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) > 1:
        return tf.distribute.MirroredStrategy(devices=[d.name for d in cpus])
    return tf.distribute.MirroredStrategy()


def pick_strategy(mode: str = "auto"):
    """Return ``(strategy, description)`` for ``config.distribute``."""
    if mode == "none":
        return tf.distribute.get_strategy(), "default"
    if mode == "tpu":
        resolver = _tpu_resolver() if _tpu_hint() else None
        if resolver is None:
            raise ConfigError([("distribute", "tpu", "no TPU runtime found (no /dev/accel*, TPU_NAME or "
                                "COLAB_TPU_ADDR); use distribute: auto to fall back to CPU/GPU")])
        return _tpu_strategy(resolver), "tpu"
    if mode == "multi_worker":
        if _workers_in_tf_config() < 1:
            raise ConfigError([("distribute", "multi_worker", "needs the TF_CONFIG environment variable "
                                "naming the cluster's workers")])
        return tf.distribute.MultiWorkerMirroredStrategy(), "multi_worker"
    if mode == "mirrored":
        return _mirrored(), "mirrored"
    # auto
    if _tpu_hint():
        resolver = _tpu_resolver()
        if resolver is not None:
            return _tpu_strategy(resolver), "tpu"
    if _workers_in_tf_config() > 1:
        return tf.distribute.MultiWorkerMirroredStrategy(), "multi_worker"
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy(), "mirrored"
    return tf.distribute.get_strategy(), "default"


def batch_sizes(strategy, global_batch: int) -> dict:
    """How a global batch is split: ``{global_batch_size, per_replica_batch_size, replicas, ...}``."""
    replicas = int(getattr(strategy, "num_replicas_in_sync", 1))
    workers = _workers(strategy)
    try:
        devices = list(strategy.extended.worker_devices)
    except (RuntimeError, AttributeError):  # the default strategy has no device list
        devices = [tf.config.list_logical_devices("GPU")[:1] or tf.config.list_logical_devices("CPU")[:1]][0]
        devices = [d.name for d in devices]
    return {"global_batch_size": int(global_batch),
            "per_replica_batch_size": int(math.ceil(global_batch / replicas)),
            "replicas": replicas, "workers": workers, "devices": [str(d) for d in devices]}


def shared_secret(strategy) -> Optional[int]:
    """A secret random int that every worker of a multi-worker strategy holds the same; None on one worker.

    Each worker draws ``secrets.randbits(62)``; an all-gather over the cluster's replicas gives every worker
    every draw and all keep the first replica's (on the first worker). The run's PrivacyBudget derives every
    secret seed from it (:meth:`PrivacyBudget.share_secret`). Without it each worker draws its own Python-side
    seeds: measured (tests/distribute/test_dp_seeds.py) the canary seed differed between workers, and so would
    DP preprocessing and reweighing noise drawn before training (different features / weights per worker);
    the DP-SGD noise seed itself was already shared because a variable created in the strategy's scope takes
    the first worker's initial value. With shared seeds every worker builds the same shuffle order / Poisson
    sample and takes its shard of the same global batches. The value is secret: it travels only between the
    run's workers and is never written to the run.
    """
    if _workers(strategy) < 2:
        return None
    own = secrets.randbits(62)
    values = strategy.experimental_distribute_values_from_function(lambda _ctx: tf.constant([own], tf.int64))
    everyone = strategy.gather(values, axis=0)  # [replicas] on every worker, in replica order
    return int(everyone.numpy()[0])


def same_on_all_workers(strategy, values) -> bool:
    """True when every worker of a multi-worker strategy holds the same int64 ``values`` (always on one worker).

    An all-gather of each replica's values; the values never leave the run's workers.
    """
    if _workers(strategy) < 2 or not values:
        return True
    mine = tf.constant([int(v) for v in values], tf.int64)
    gathered = strategy.gather(strategy.experimental_distribute_values_from_function(lambda _ctx: mine), axis=0)
    rows = gathered.numpy().reshape(-1, len(values))
    return bool((rows == rows[0]).all())


def _workers(strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return 1
    try:
        spec = resolver.cluster_spec().as_dict()
    except Exception:  # a resolver without a cluster spec (single host)
        return 1
    return max(1, len(spec.get("worker", [])) + len(spec.get("chief", [])))
