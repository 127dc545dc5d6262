"""Pick the ``tf.distribute`` strategy for ``config.distribute``."""
from __future__ import annotations

import json
import os

import tensorflow as tf

from tfresp.errors import ConfigError


def _tpu_resolver():
    try:
        return tf.distribute.cluster_resolver.TPUClusterResolver()
    except (ValueError, tf.errors.NotFoundError):
        pass
    try:  # Colab TPU VMs expose the TPU locally
        return tf.distribute.cluster_resolver.TPUClusterResolver(tpu="local")
    except (ValueError, tf.errors.NotFoundError, RuntimeError):
        return None


def _tpu_strategy(resolver):
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def pick_strategy(mode: str = "auto"):
    """Return ``(strategy, description)``.

    ``auto``: TPUStrategy on a TPU runtime, MultiWorkerMirroredStrategy when ``TF_CONFIG`` names
    several workers, MirroredStrategy with more than one GPU, else the default strategy.
    """
    gpus = tf.config.list_logical_devices("GPU")
    if mode == "none":
        return tf.distribute.get_strategy(), "default"
    if mode == "tpu":
        resolver = _tpu_resolver()
        if resolver is None:
            raise ConfigError([("distribute", "tpu", "no TPU runtime found")])
        return _tpu_strategy(resolver), "tpu"
    if mode == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError([("distribute", "multi_worker", "needs the TF_CONFIG environment variable")])
        return tf.distribute.MultiWorkerMirroredStrategy(), "multi_worker"
    if mode == "mirrored":
        return tf.distribute.MirroredStrategy(), "mirrored"
    # auto
    if os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_NAME") or os.path.exists("/dev/accel0"):
        resolver = _tpu_resolver()
        if resolver is not None:
            return _tpu_strategy(resolver), "tpu"
    tf_config = os.environ.get("TF_CONFIG")
    if tf_config:
        try:
            workers = json.loads(tf_config).get("cluster", {}).get("worker", [])
        except json.JSONDecodeError:
            raise ConfigError([("TF_CONFIG", tf_config[:80], "is not valid JSON")]) from None
        if len(workers) > 1:
            return tf.distribute.MultiWorkerMirroredStrategy(), "multi_worker"
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy(), "mirrored"
    return tf.distribute.get_strategy(), "default"
