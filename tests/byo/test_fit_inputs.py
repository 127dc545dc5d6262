"""tfresp.fit(model=..., data=...): (X, y) arrays, tf.data.Dataset (with and without DP), probability outputs."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tfresp

CFG = {"name": "byo", "train": {"epochs": 1, "batch_size": 32}, "export": {"saved_model": False}}


def arrays(n=300, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    return x, np.where(x[:, 0] + 0.3 * rng.normal(size=n) > 0, "yes", "no")


def softmax_model(d=3):
    keras.utils.set_random_seed(0)
    inp = keras.Input((d,))
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="probs")(inp), name="my_probs")


def test_arrays_need_no_label_and_probabilities_are_served_as_such(tmp_path):
    x, y = arrays()
    user = softmax_model()
    run = tfresp.fit(CFG, model=user, data=(x, y), out=tmp_path / "r", quiet=True, export={"saved_model": True})
    assert run.report["model"]["name"] == "my_probs" and "softmax" in run.report["model"]["outputs"]
    # the trained core is the user's model + a weightless log layer: its softmax is the user's probabilities
    ctx = run.context
    np.testing.assert_allclose(ctx.predictions["test"], user.predict(ctx.data.test.x, verbose=0), atol=1e-5)
    assert run.report["export"]["saved_model"]["roundtrip_max_abs_diff"] < 1e-5
    assert run.report["data"]["splits"]["train"]["rows"] + run.report["data"]["splits"]["test"]["rows"] + \
        run.report["data"]["splits"]["validation"]["rows"] == 300


@pytest.mark.parametrize("batched", [True, False])
def test_tf_data_without_dp_trains_on_every_row(tmp_path, batched):
    x, y = arrays()
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.batch(64) if batched else ds
    run = tfresp.fit(CFG, model=lambda spec: keras.Sequential([keras.Input(spec.shape), keras.layers.Dense(2)]),
                     data=ds, out=tmp_path / "r", quiet=True)
    splits = run.report["data"]["splits"]
    assert sum(splits[s]["rows"] for s in ("train", "validation", "test")) == 300
    assert run.report["model"]["api"] == "sequential"


def test_tf_data_under_dp_is_refused_before_training(tmp_path):
    x, y = arrays()
    with pytest.raises(tfresp.DataError, match="cannot be used with `privacy`.*random access.*Remedy: pass the rows"):
        tfresp.fit(CFG, model=softmax_model(), data=tf.data.Dataset.from_tensor_slices((x, y)).batch(32),
                   privacy={"target_epsilon": 3}, out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_tf_data_needs_a_known_finite_size(tmp_path):
    x, y = arrays()
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    with pytest.raises(tfresp.DataError, match="infinite"):
        tfresp.fit(CFG, model=softmax_model(), data=ds.repeat(), out=tmp_path / "a")
    with pytest.raises(tfresp.DataError, match="assert_cardinality"):
        tfresp.fit(CFG, model=softmax_model(), data=ds.filter(lambda a, b: True), out=tmp_path / "b")


def test_model_problems_are_named(tmp_path):
    x, y = arrays()
    with pytest.raises(tfresp.ConfigError, match="model.kind.*tfresp.fit\\(config, model=...\\)"):
        tfresp.fit({**CFG, "model": {"kind": "keras"}}, data=(x, y), out=tmp_path / "a")
    three = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)], name="three")
    with pytest.raises(tfresp.IncompatibleModelError, match="'three' outputs shape \\(3,\\).*2 classes.*Dense\\(2\\)"):
        tfresp.fit(CFG, model=three, data=(x, y), out=tmp_path / "b")
    wrong_input = keras.Sequential([keras.Input((7,)), keras.layers.Dense(2)], name="seven")
    with pytest.raises(tfresp.IncompatibleModelError, match="'seven'.*cannot be called"):
        tfresp.fit(CFG, model=wrong_input, data=(x, y), out=tmp_path / "c")
    with pytest.raises(tfresp.ConfigError, match="`model`"):
        tfresp.fit(CFG, model="resnet", data=(x, y), out=tmp_path / "d")
    assert not any(tmp_path.iterdir())


class OneLogit(keras.Model):
    def __init__(self):
        super().__init__(name="one_logit")
        self.out = keras.layers.Dense(1)

    def call(self, x, training=False):
        return self.out(x)


def test_one_column_subclassed_output_must_be_declared(tmp_path):
    x, y = arrays()
    with pytest.raises(tfresp.IncompatibleModelError, match="model.outputs"):
        tfresp.fit(CFG, model=OneLogit(), data=(x, y), out=tmp_path / "a")
    run = tfresp.fit({**CFG, "model": {"outputs": "logits"}}, model=OneLogit(), data=(x, y), out=tmp_path / "b",
                     quiet=True)
    assert "positive class" in run.report["model"]["outputs"]
    user = run.model.inner  # the user's model, trained; tfresp served sigmoid(z) as P(positive class)
    z = user.predict(run.context.data.test.x, verbose=0)[:, 0]
    np.testing.assert_allclose(run.context.predictions["test"][:, 1], 1 / (1 + np.exp(-z)), atol=1e-5)
