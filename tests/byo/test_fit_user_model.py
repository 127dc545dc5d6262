"""tfresp.fit(model=...): a functional and a subclassed user model trained with DP + fairness + pruning + export."""
import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tfresp
from tests.conftest import tiny_adult

pytestmark = pytest.mark.slow  # two full runs (~35 s each on 2 shared cores); fast checks: test_fit_inputs.py


def functional_builder(spec):
    inp = keras.Input(spec.shape, name="features")
    h = keras.layers.Dense(16, activation="relu", name="hidden")(inp)
    return keras.Model(inp, keras.layers.Dense(spec.num_classes, name="logits")(h), name="my_functional")


class TwoTower(keras.Model):
    """A subclassed model that reuses one layer twice (shared weights)."""

    def __init__(self, num_classes):
        super().__init__(name="two_tower")
        self.shared = keras.layers.Dense(8, activation="tanh", name="shared")
        self.head = keras.layers.Dense(num_classes, name="head")

    def call(self, x, training=False):
        return self.head(self.shared(x) + 0.5 * self.shared(x * 0.5))


def evidence_cfg(name, **over):
    return tiny_adult(name=name, data={"max_rows": 1500}, train={"epochs": 2, "batch_size": 128},
                      privacy={"target_epsilon": 4.0, "audit": False},
                      fairness={"bootstrap": 20}, compression={"prune": 0.5}, **over)


@pytest.fixture(scope="module")
def functional_run(tmp_path_factory):
    return tfresp.fit(evidence_cfg("byo-functional"), model=functional_builder,
                      out=tmp_path_factory.mktemp("runs") / "f", quiet=True)


@pytest.fixture(scope="module")
def subclassed_run(tmp_path_factory):
    return tfresp.fit(evidence_cfg("byo-subclassed"), model=lambda spec: TwoTower(spec.num_classes),
                      out=tmp_path_factory.mktemp("runs") / "s", quiet=True)


@pytest.mark.parametrize("which", ["functional_run", "subclassed_run"])
def test_every_concern_runs_on_the_user_model(which, request):
    run = request.getfixturevalue(which)
    rep = run.report
    assert rep["model"]["kind"] == "keras"
    assert rep["privacy"]["epsilon"] <= 4.0 + 1e-9 and rep["privacy"]["steps"] > 0
    assert rep["fairness"]["sex"]["demographic_parity_difference"] is not None
    kernels = [v.numpy() for v in run.model.weights if "kernel" in v.name]
    measured = 1 - sum(np.count_nonzero(k) for k in kernels) / sum(k.size for k in kernels)
    assert measured > 0.3, (measured, rep["compression"])
    # the export serves the trained model: same probabilities on raw rows
    assert rep["export"]["saved_model"]["roundtrip_max_abs_diff"] < 1e-5


def test_report_names_the_users_model(functional_run, subclassed_run):
    f, s = functional_run.report["model"], subclassed_run.report["model"]
    assert (f["name"], f["api"], f["class"].rsplit(".", 1)[-1]) == ("my_functional", "functional", "Functional")
    assert [l["name"] for l in f["architecture"]][-2:] == ["hidden", "logits"]
    assert "hidden (Dense)" in f["summary"]
    assert (s["name"], s["api"], s["class"].rsplit(".", 1)[-1]) == ("two_tower", "subclassed", "TwoTower")
    assert s["user_parameters"] == subclassed_run.model.count_params()
    on_disk = json.loads((functional_run.run_dir / "report.json").read_text())["model"]
    assert on_disk["name"] == "my_functional" and "mlp" not in json.dumps(on_disk)


def test_clipping_mode_follows_the_model(functional_run, subclassed_run):
    # ghost norms need the functional layer graph; the subclassed model falls back to vectorized clipping
    assert subclassed_run.report["privacy"]["clipping"]["mode"] == "vectorized"
    assert "subclassed" in subclassed_run.report["privacy"]["clipping"]["reason"]
    assert functional_run.report["privacy"]["clipping"]["mode"] in ("ghost", "vectorized")
