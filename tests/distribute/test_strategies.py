"""Strategy selection and non-DP training under MirroredStrategy / MultiWorkerMirroredStrategy.

The oracle is the single-device run of the same config: same global batch, same data order, so the
distributed run must reach the same weights and metrics up to float summation order.
"""
import numpy as np
import pytest
import tensorflow as tf

from tfresp.run import distribute
from tfresp.errors import ConfigError
from tests.distribute.helpers import run_local, run_workers, start_local

CFG = {"name": "dist", "seed": 0,
       "data": {"source": "adult", "label": "income", "sensitive": ["sex"], "max_rows": 3000},
       "model": {"kind": "mlp", "hidden": [16]},
       "train": {"epochs": 2, "batch_size": 128},
       "export": {"saved_model": False}, "report": {"html": False}}


def _close(a: dict, b: dict, tol: float):
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        np.testing.assert_allclose(a["training"]["history"][key], b["training"]["history"][key], atol=tol, rtol=0)
    for wa, wb in zip(a["weights"], b["weights"]):
        np.testing.assert_allclose(np.asarray(wa), np.asarray(wb), atol=tol, rtol=0)
    assert abs(a["evaluation"]["test"]["accuracy"] - b["evaluation"]["test"]["accuracy"]) <= 2e-3


@pytest.fixture(scope="module")
def single_started(tmp_path_factory):  # the reference process, started; the first test waits for it
    return start_local({**CFG, "distribute": "none"}, tmp_path_factory.mktemp("single") / "run")


@pytest.fixture(scope="module")
def single(single_started):
    return single_started.result()


def test_mirrored_two_logical_cpus_matches_single_device(single_started, tmp_path):
    mirrored = run_local({**CFG, "distribute": "mirrored"}, tmp_path / "run", logical_cpus=2)  # beside the reference
    single = single_started.result()
    tr = mirrored["training"]
    assert (tr["strategy"], tr["replicas"], tr["global_batch_size"], tr["per_replica_batch_size"]) == \
        ("mirrored", 2, 128, 64)
    assert single["training"]["replicas"] == 1 and single["training"]["per_replica_batch_size"] == 128
    # Without the 1/replicas loss scaling the update would be twice as large and this fails at 1e-2.
    _close(mirrored, single, tol=1e-4)


@pytest.mark.slow  # two TF processes + the reference run: ~60 s on 2 shared cores
def test_multi_worker_two_local_processes_match_single_device(single, tmp_path):
    w0, w1 = run_workers({**CFG, "distribute": "multi_worker"}, tmp_path, workers=2)
    for w in (w0, w1):
        assert (w["training"]["strategy"], w["training"]["replicas"], w["training"]["workers"]) == \
            ("multi_worker", 2, 2)
        assert w["training"]["per_replica_batch_size"] == 64
        _close(w, single, tol=1e-4)
    for a, b in zip(w0["weights"], w1["weights"]):  # replicas stay in sync
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# -- selection (in-process, no training) -------------------------------------------------------------
def test_none_and_auto_give_default_strategy_on_a_cpu_host(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    for var in ("TPU_NAME", "COLAB_TPU_ADDR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(distribute, "_tpu_vm", lambda: False)
    assert distribute.pick_strategy("none")[1] == "default"
    assert distribute.pick_strategy("auto")[1] == "default"
    s, kind = distribute.tpu_or_default()
    assert kind == "default" and s is tf.distribute.get_strategy()


def test_tpu_requested_without_a_tpu_is_a_config_error(monkeypatch):
    monkeypatch.setattr(distribute, "_tpu_vm", lambda: False)
    for var in ("TPU_NAME", "COLAB_TPU_ADDR"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError) as exc:
        distribute.pick_strategy("tpu")
    assert exc.value.problems[0][0] == "distribute" and "no TPU runtime" in str(exc.value)


def test_tpu_vm_is_resolved_with_tpu_local(monkeypatch):
    calls = []

    class FakeResolver:
        def __init__(self, **kwargs):
            calls.append(kwargs)
            if kwargs.get("tpu") != "local":
                raise ValueError("Please provide a TPU Name to connect to.")

    monkeypatch.setattr(distribute, "_tpu_vm", lambda: True)
    monkeypatch.setenv("TPU_NAME", "my-node")
    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", FakeResolver)
    assert isinstance(distribute._tpu_resolver(), FakeResolver)
    assert calls[0] == {"tpu": "local"}  # TPU VM first (current Colab), before the named TPU node
    # A TPU found but failing to initialise falls back to the default strategy in tpu_or_default().
    monkeypatch.setattr(distribute, "_tpu_strategy", lambda r: (_ for _ in ()).throw(RuntimeError("busy")))
    assert distribute.tpu_or_default()[1] == "default"


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError) as exc:
        distribute.pick_strategy("multi_worker")
    assert "TF_CONFIG" in str(exc.value)
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError) as exc:
        distribute.pick_strategy("auto")
    assert exc.value.problems[0][0] == "TF_CONFIG"


def test_batch_sizes_of_the_default_strategy():
    got = distribute.batch_sizes(tf.distribute.get_strategy(), 100)
    assert (got["global_batch_size"], got["per_replica_batch_size"], got["replicas"]) == (100, 100, 1)
