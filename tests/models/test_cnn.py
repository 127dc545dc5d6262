"""CNN builder, digits image source, and pretrain -> fine-tune from a tfresp run."""
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tf_keras as keras

import tfresp
from tfresp.config import load_config
from tfresp.data.dataset import prepare
from tfresp.data.images import ImagePreprocessor, parse_label_subset
from tfresp.errors import CheckpointError, ConfigError, DataError
from tfresp.models.cnn import HEAD, build_cnn


def _digits_cfg(source="digits", **over):
    cfg = {"name": "dig", "seed": 0, "data": {"source": source, "label": "label"},
           "model": {"kind": "cnn", "hidden": [8, 16]}, "train": {"epochs": 1, "batch_size": 64}}
    for k, v in over.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    return cfg


def test_build_cnn_shapes_head_and_no_batchnorm():
    core = build_cnn((8, 8, 1), 7, [8, 16])
    assert core.output_shape == (None, 7)
    assert core.layers[-1].name == HEAD
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in core.layers)
    # zero-initialised residual branches: each block starts as relu(identity)
    x = tf.random.uniform([2, 8, 8, 1])
    stem = keras.Model(core.input, core.get_layer("stem").output)(x)
    block = keras.Model(core.input, core.get_layer("stage0_res_out").output)(x)
    np.testing.assert_allclose(block, tf.nn.relu(stem), atol=1e-6)


def test_digits_bundle_is_image_kind_in_unit_range():
    data = prepare(load_config(_digits_cfg("digits:0-4")))
    assert data.kind == "image" and data.classes == ["0", "1", "2", "3", "4"]
    assert data.train.x.shape[1:] == (8, 8, 1) and data.train.x.dtype == np.float32
    assert data.train.x.min() >= 0.0 and data.train.x.max() == 1.0
    # stratified split, disjoint splits, all five classes everywhere
    for split in (data.train, data.validation, data.test):
        assert set(np.unique(split.y)) == set(range(5))
    n = len(data.train) + len(data.validation) + len(data.test)
    from sklearn.datasets import load_digits
    assert n == int(np.isin(load_digits().target, range(5)).sum())


def test_image_preprocessor_roundtrip(tmp_path):
    from sklearn.datasets import load_digits
    raw = load_digits().images[:5].astype(np.float32)
    pre = ImagePreprocessor(8, 8, 1, scale=16.0)
    df = pd.DataFrame({"image": list(raw)})
    x = pre.transform_frame(df)
    np.testing.assert_allclose(x[..., 0], raw / 16.0)
    pre.save(tmp_path)
    again = ImagePreprocessor.load(tmp_path)
    np.testing.assert_array_equal(again.transform_frame(df), x)
    assert list(pre.input_signature()) == ["image"]
    with pytest.raises(DataError, match="shape"):
        pre.frame_to_inputs(pd.DataFrame({"image": [np.zeros((4, 4))]}))


@pytest.mark.parametrize("spec", ["9-3", "1", "a,b", "3,12"])
def test_bad_label_subsets(spec):
    with pytest.raises(DataError):
        parse_label_subset(spec)


def test_freeze_without_checkpoint_and_cnn_on_tabular_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="model.freeze"):
        tfresp.fit(_digits_cfg(model={"freeze": "all-but-head"}), out=tmp_path / "a", quiet=True)
    with pytest.raises(ConfigError, match="image data"):
        tfresp.fit({"data": {"source": "adult", "max_rows": 500}, "model": {"kind": "cnn"}},
                   out=tmp_path / "b", quiet=True)
    with pytest.raises(CheckpointError, match="not a directory"):
        tfresp.fit(_digits_cfg(model={"checkpoint": str(tmp_path / "nope")}), out=tmp_path / "c", quiet=True)


def test_pretrain_then_finetune_frozen_base(tmp_path):
    pre = tfresp.fit(_digits_cfg("digits:0-4", train={"epochs": 2}), out=tmp_path / "pre", quiet=True)
    base = {v.name: v.numpy() for v in pre.model.variables}
    ft = tfresp.fit(_digits_cfg("digits:5-9", model={"checkpoint": str(pre.run_dir), "freeze": "all-but-head"},
                                data={"max_rows": 60}, train={"batch_size": 16}),
                    out=tmp_path / "ft", quiet=True)
    core = ft.model
    assert [v.name for v in core.trainable_variables] == [f"{HEAD}/kernel:0", f"{HEAD}/bias:0"]
    for v in core.variables:
        if not v.name.startswith(HEAD + "/"):
            np.testing.assert_array_equal(v.numpy(), base[v.name])  # loaded, and frozen during training
    # different label set: the head was re-initialised, not copied
    assert not np.allclose(core.get_layer(HEAD).kernel.numpy(), base[f"{HEAD}/kernel:0"])
    assert ft.report["model"]["trainable_parameters"] < ft.report["model"]["parameters"] / 5
    assert len(ft.context.data.train) <= 60
    # a mismatched architecture is a CheckpointError naming the variable
    with pytest.raises(CheckpointError, match="shape"):
        tfresp.fit(_digits_cfg("digits:5-9", model={"checkpoint": str(pre.run_dir), "hidden": [4, 16]}),
                   out=tmp_path / "bad", quiet=True)
