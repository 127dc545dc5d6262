"""TFLite variants: round trip within the documented tolerance, sparsity kept, unsupported ops/layers by name."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfresp.compression.masks import magnitude_mask
from tfresp.export import tflite
from tfresp.run.io import atomic_write
from tfresp.models.mlp import build_mlp


@pytest.fixture(scope="module")
def trained_mlp():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 12)).astype(np.float32)
    y = (x[:, 0] - x[:, 3] > 0).astype(np.int64)
    core = build_mlp(12, 2, [32, 16])
    core.compile(optimizer=keras.optimizers.Adam(1e-2),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    core.fit(x, y, epochs=3, batch_size=64, verbose=0)
    return core, x, y


def _proba(core, x):
    return tf.nn.softmax(core(x)).numpy()


@pytest.mark.parametrize("variant", ["float", "float16", "dynamic", "int8"])
def test_roundtrip_within_tolerance(trained_mlp, variant, tmp_path):
    core, x, _ = trained_mlp
    conv = tflite.convert(core, variant, representative_x=x[:100])
    path = tmp_path / f"m_{variant}.tflite"
    atomic_write(path, conv["content"])
    model = tflite.TFLiteModel(path.read_bytes())  # reload from disk
    got = tflite._softmax(model.predict_logits(x, batch_size=97))
    res = tflite.roundtrip(variant, _proba(core, x), got)
    assert res["passed"], res
    if variant == "float":
        with pytest.raises(ValueError, match="no rows to predict"):
            model.predict_logits(x[:0])
    if variant == "float":
        assert res["max_abs_diff"] < 1e-5
    else:  # a quantized model really is a different model: it must not be bit-identical
        assert res["max_abs_diff"] > 0
    if variant == "int8":
        ops = {op["op_name"] for op in tflite._interpreter(conv["content"], delegates=False)._get_ops_details()}
        assert "FULLY_CONNECTED" in ops and conv["strict"] and conv["float_fallback"] == []


def test_roundtrip_detects_a_wrong_model(trained_mlp):
    core, x, _ = trained_mlp
    other = build_mlp(12, 2, [32, 16])  # untrained
    res = tflite.roundtrip("float", _proba(core, x), _proba(other, x))
    assert not res["passed"]


def test_sizes_shrink_and_sparsity_survives_conversion(trained_mlp):
    _, x, _ = trained_mlp
    keras.utils.set_random_seed(3)
    sparse = build_mlp(12, 2, [256, 128])  # big enough that weights, not the flatbuffer header, dominate
    for layer in sparse.layers:
        if hasattr(layer, "kernel"):
            layer.kernel.assign(layer.kernel.numpy() * magnitude_mask(layer.kernel.numpy(), 0.8))
    sizes = {}
    for variant in ("float", "int8", "float16"):
        content = tflite.convert(sparse, variant, representative_x=x[:50])["content"]
        sizes[variant] = len(content)
        sp = tflite.tflite_sparsity(content)
        assert len(sp["per_layer"]) == 3
        assert sp["global"] == pytest.approx(0.8, abs=0.02), (variant, sp)
    assert sizes["int8"] < 0.3 * sizes["float"] and sizes["float16"] < 0.55 * sizes["float"]


def test_int8_unsupported_op_is_reported_by_name_not_crashed_on(trained_mlp):
    _, x, _ = trained_mlp
    inp = keras.Input((12,), name="features")
    h = keras.layers.Dense(8, name="dense_a")(inp)
    h = keras.layers.Lambda(tf.math.sin, name="periodic")(h)
    out = keras.layers.Dense(2, name="logits")(h)
    core = keras.Model(inp, out)
    conv = tflite.convert(core, "int8", representative_x=x[:50])
    assert not conv["strict"]
    names = " ".join(f"{o['op']} {o['tensor']}" for o in conv["float_fallback"])
    assert conv["float_fallback"] == [{"op": "SIN", "tensor": conv["float_fallback"][0]["tensor"]}]
    assert "periodic" in names
    # the converted model still runs
    model = tflite.TFLiteModel(conv["content"])
    assert model.predict_logits(x[:5]).shape == (5, 2)


def test_qat_reports_unsupported_layer_by_name():
    from tfresp.compression import _tfmot

    inp = keras.Input((12,))
    h = keras.layers.Dense(8, name="dense_a")(inp)
    h = keras.layers.LayerNormalization(name="norm")(h)
    out = keras.layers.Dense(2, name="logits")(h)
    qat, quantized, unsupported = _tfmot.quantize_aware(keras.Model(inp, out))
    assert ("norm", "LayerNormalization") in unsupported
    assert set(quantized) == {"dense_a", "logits"}
    assert qat(np.zeros((2, 12), np.float32)).shape == (2, 2)


def test_tfmot_two_four_on_functional_mlp():
    from tfresp.compression import _tfmot
    from tfresp.compression.masks import check_nm
    from tfresp.compression.schedule import SparsitySchedule
    from tfresp.models.base import ResponsibleModel

    keras.utils.set_random_seed(0)
    core = build_mlp(16, 2, [32, 8])
    pruned, wrapped, skipped = _tfmot.prune(core, SparsitySchedule("constant", 0.5, 0, 0, 4), structured=(2, 4))
    # the logits layer has 8 inputs: prunable in groups of 4 too
    assert set(wrapped) == {"dense_0", "dense_1", "logits"} and skipped == []
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 16)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    m = ResponsibleModel(pruned)
    m.compile(optimizer="adam")
    ds = tf.data.Dataset.from_tensor_slices((x, y, {"sample_weight": np.ones(256, np.float32)})).batch(32)
    m.fit(ds, epochs=2, verbose=0, callbacks=[_tfmot.update_step_callback()])
    stripped = _tfmot.strip(pruned)
    assert not _tfmot.has_pruning_wrappers(stripped)
    for layer in stripped.layers:
        if hasattr(layer, "kernel"):
            assert check_nm(layer.kernel.numpy(), 2, 4), layer.name
            assert np.mean(layer.kernel.numpy() == 0) == pytest.approx(0.5, abs=0.02)
