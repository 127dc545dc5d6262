"""ResponsibleModel honours compile(loss, metrics), Keras (x, y, sample_weight) batches and an extras dict."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tfresp
from tfresp.models.base import ResponsibleModel


def _data(n=64, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64"), rng.uniform(0.1, 3.0, size=n).astype("float32")


def _core(activation=None, k=2, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((4,))
    return keras.Model(inp, keras.layers.Dense(k, activation=activation)(keras.layers.Dense(8, activation="relu")(inp)))


def _clone(core):
    twin = keras.models.clone_model(core)
    twin.set_weights(core.get_weights())
    return twin


@pytest.mark.parametrize("loss,activation", [
    (keras.losses.SparseCategoricalCrossentropy(from_logits=True), None),
    ("sparse_categorical_crossentropy", "softmax"),
])
def test_sample_weights_match_plain_keras(loss, activation):
    """Oracle: the same core compiled in plain Keras with the same weighted batches takes the same steps."""
    x, y, w = _data()
    core = _core(activation)
    plain = _clone(core)
    ours = ResponsibleModel(core)
    ours.compile(keras.optimizers.SGD(0.1), loss)
    plain.compile(keras.optimizers.SGD(0.1), loss)
    ours.fit(x, y, sample_weight=w, batch_size=16, epochs=2, shuffle=False, verbose=0)
    plain.fit(x, y, sample_weight=w, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(core.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # ... and ignoring the weights would have trained differently (the check can fail)
    dropped = ResponsibleModel(_clone(_core(activation)))
    dropped.compile(keras.optimizers.SGD(0.1), loss)
    dropped.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    assert max(np.abs(a - b).max() for a, b in zip(dropped.core.get_weights(), plain.get_weights())) > 1e-3


def test_compiled_metrics_and_weighted_evaluate():
    x, y, w = _data()
    model = ResponsibleModel(_core())
    # Keras semantics: `metrics` ignore sample weights, `weighted_metrics` use them
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
                  weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="wacc")])
    hist = model.fit(x, y, sample_weight=w, epochs=1, verbose=0).history
    assert set(hist) == {"loss", "acc", "wacc"}
    res = model.evaluate(x, y, sample_weight=w, batch_size=64, return_dict=True, verbose=0)
    logits = model.core(x).numpy()
    per_ex = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True).numpy()
    np.testing.assert_allclose(res["loss"], np.mean(per_ex * w), rtol=1e-5)
    np.testing.assert_allclose(res["acc"], np.mean(logits.argmax(1) == y), rtol=1e-5)
    np.testing.assert_allclose(res["wacc"], np.sum((logits.argmax(1) == y) * w) / w.sum(), rtol=1e-5)


@pytest.mark.parametrize("activation,loss", [
    ("softmax", keras.losses.SparseCategoricalCrossentropy(from_logits=True)),
    (None, "sparse_categorical_crossentropy"),
    (None, keras.losses.SparseCategoricalCrossentropy()),
])
def test_from_logits_contradicting_the_output_is_refused(activation, loss):
    with pytest.raises(tfresp.IncompatibleModelError, match=r"`loss`: .*Remedy"):
        ResponsibleModel(_core(activation)).compile("adam", loss)


def test_binary_sigmoid_model_with_binary_crossentropy():
    x, y, w = _data()
    keras.utils.set_random_seed(0)
    core = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model = ResponsibleModel(core)
    model.compile(keras.optimizers.SGD(0.5), "binary_crossentropy", metrics=["binary_accuracy"])
    before = model.evaluate(x, y, return_dict=True, verbose=0)["loss"]
    model.fit(x, y.astype("float32"), epochs=5, verbose=0)
    after = model.evaluate(x, y, return_dict=True, verbose=0)
    assert after["loss"] < before and after["binary_accuracy"] > 0.7


def test_side_inputs_reach_terms_not_the_core():
    x, y, _ = _data()
    seen = {}

    def term(model, xb, yb, outputs, extras, training):
        seen["keys"] = sorted(extras)
        return tf.zeros_like(outputs[:, 0])

    model = ResponsibleModel(_core(), terms=[term])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ds = tf.data.Dataset.from_tensor_slices((x, y, {"sample_weight": np.ones(64, "f"), "group": y})).batch(16)
    model.fit(ds, epochs=1, verbose=0)
    assert seen["keys"] == ["group", "sample_weight"]


def test_unpack_keeps_keras_sample_weight():
    w = tf.constant([1.0, 2.0])
    assert ResponsibleModel.unpack(("x", "y", w))[2]["sample_weight"] is w
    assert ResponsibleModel.unpack(("x", "y", {"g": 1}))[2] == {"g": 1}
    assert ResponsibleModel.unpack(("x", "y")) == ("x", "y", {})


def test_batch_and_input_transform_terms_are_slotted():
    noise = tfresp.terms.GaussianNoiseTraining(0.1)
    mindiff = tfresp.terms.MinDiff(group="group")
    model = ResponsibleModel(_core(), terms=[noise, mindiff])
    assert model.input_transform is noise.transform and model.batch_losses == [mindiff]
    with pytest.raises(tfresp.IncompatibleModelError, match="two input transforms"):
        model.add_term(tfresp.terms.AdversarialTraining(0.1, steps=2))
    old_name = "Tfresp" + "Model"  # spelled apart so renaming scripts leave this check alone
    assert "ResponsibleModel" in tfresp.__all__ and tfresp.ResponsibleModel is ResponsibleModel  # one public name
    assert old_name not in tfresp.__all__ and not hasattr(tfresp, old_name)
