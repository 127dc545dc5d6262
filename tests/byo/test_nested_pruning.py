"""Pruning reaches the weights of a model nested as a layer (a keras.applications backbone is one)."""
import numpy as np
import pytest
import tf_keras as keras

import tfresp
from tfresp.compression import _tfmot
from tfresp.compression.pruning_scheduler import is_kernel
from tfresp.compression.schedule import SparsitySchedule


def nested_builder(spec):
    """A small functional 'backbone' used as one layer of the outer model, like ResNet50 in test_resnet.py."""
    b_in = keras.Input(spec.shape)
    h = keras.layers.Dense(32, activation="relu", name="b_dense1")(b_in)
    backbone = keras.Model(b_in, keras.layers.Dense(16, activation="relu", name="b_dense2")(h), name="backbone")
    inp = keras.Input(spec.shape, name="features")
    return keras.Model(inp, keras.layers.Dense(spec.num_classes, name="head")(backbone(inp)), name="outer")


def measured_sparsity(variables):
    w = [v.numpy() for v in variables]
    return 1 - sum(np.count_nonzero(k) for k in w) / sum(k.size for k in w)


def backbone_kernels(model):
    return [v for v in model.get_layer("backbone").weights if is_kernel(v)]


def test_tfmot_prune_wraps_the_nested_model_layers():
    spec = tfresp.InputSpec((6,), 2, ("0", "1"), "tabular", ())
    core = nested_builder(spec)
    schedule = SparsitySchedule("constant", target=0.6, begin_step=0, end_step=4, frequency=1)
    pruned, wrapped, skipped = _tfmot.prune(core, schedule)
    assert sorted(wrapped) == ["backbone/b_dense1", "backbone/b_dense2", "head"], (wrapped, skipped)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(256, 6)).astype("float32"), rng.integers(0, 2, 256)
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, epochs=2, batch_size=64, callbacks=[_tfmot.update_step_callback()], verbose=0)
    stripped = _tfmot.strip(pruned)
    assert not _tfmot.has_pruning_wrappers(stripped)
    kernels = backbone_kernels(stripped)
    assert len(kernels) == 2
    assert measured_sparsity(kernels) == pytest.approx(0.6, abs=0.02)
    # the stripped model computes what the pruned one does (same variables, wrappers removed)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-5)


def test_fit_auto_pruning_reaches_nested_kernels(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 6)).astype("float32")
    y = (X[:, 0] - X[:, 2] > 0).astype("int64")
    run = tfresp.fit({"train": {"epochs": 2, "batch_size": 64}, "compression": {"prune": 0.5}},
                     model=nested_builder, data=(X, y), out=tmp_path / "r", quiet=True)
    pruning = run.report["compression"]["pruning"]
    assert pruning["method"] == "tfmot.prune_low_magnitude"
    assert {"backbone/b_dense1", "backbone/b_dense2"} <= set(pruning["pruned_layers"]), pruning
    assert measured_sparsity(backbone_kernels(run.model)) >= 0.5 - 0.02


class Block(keras.Model):
    def __init__(self):
        super().__init__(name="block")
        self.dense = keras.layers.Dense(8, name="inner")

    def call(self, x):
        return self.dense(x)


def test_nested_subclassed_model_is_skipped_with_its_reason():
    inp = keras.Input((6,))
    core = keras.Model(inp, keras.layers.Dense(2, name="head")(Block()(inp)))
    schedule = SparsitySchedule("constant", target=0.5, begin_step=0, end_step=4, frequency=1)
    _, wrapped, skipped = _tfmot.prune(core, schedule)
    assert wrapped == ["head"]
    assert [n for n, _ in skipped] == ["block"] and "compression.method: mask" in skipped[0][1]
