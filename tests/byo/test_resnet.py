"""keras.applications.ResNet50 (random init, 32x32 input) through tfresp.fit(model=...): what runs, what refuses."""
import numpy as np
import pytest
import tf_keras as keras

import tfresp

pytestmark = pytest.mark.slow  # ResNet50 is 23.6M parameters: minutes on 2 shared CPU cores


def resnet_builder(spec):
    """Digits are 8x8x1 grey levels: resize to ResNet50's smallest input, three channels."""
    inp = keras.Input(spec.shape, name="image")
    x = keras.layers.Resizing(32, 32)(inp if len(spec.shape) == 3 else keras.layers.Reshape(spec.shape + (1,))(inp))
    x = keras.layers.Concatenate()([x, x, x])
    net = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=spec.num_classes,
                                      classifier_activation=None)
    return keras.Model(inp, net(x), name="resnet50_digits")


CFG = {"name": "resnet", "data": {"source": "digits:0-4", "label": "label", "max_rows": 400},
       "train": {"epochs": 1, "batch_size": 32}}


def test_resnet50_trains_prunes_and_exports(tmp_path):
    # method: mask (any model). `auto` picks tfmot here, which now clones the nested ResNet50 too (it used to skip
    # it: 1 zero in 23.5M kernel weights); the nested case is checked fast in test_nested_pruning.py.
    run = tfresp.fit({**CFG, "compression": {"prune": 0.5, "method": "mask"}}, model=resnet_builder,
                     out=tmp_path / "r", quiet=True)
    rep = run.report
    assert rep["model"]["name"] == "resnet50_digits" and rep["model"]["user_parameters"] > 23_000_000
    assert "resnet50 (Functional)" in rep["model"]["summary"]
    assert rep["export"]["saved_model"]["roundtrip_max_abs_diff"] < 1e-4
    kernels = [v.numpy() for v in run.model.weights if "kernel" in v.name]
    assert 1 - sum(np.count_nonzero(k) for k in kernels) / sum(k.size for k in kernels) > 0.3


def test_resnet50_auto_pruning_reaches_the_nested_backbone(tmp_path):
    # measured (2 shared CPU cores, ~12 min): tfmot, 54 kernels of the nested ResNet50 wrapped, 23,465,152 kernel
    # weights at sparsity 0.500 (before: 1 zero in 23.5M)
    from tfresp.compression.pruning_scheduler import is_kernel

    run = tfresp.fit({**CFG, "compression": {"prune": 0.5}}, model=resnet_builder, out=tmp_path / "r", quiet=True)
    assert run.report["compression"]["pruning"]["method"] == "tfmot.prune_low_magnitude"
    kernels = [v.numpy() for v in run.model.get_layer("resnet50").weights if is_kernel(v)]
    assert sum(k.size for k in kernels) > 23_000_000
    assert 1 - sum(np.count_nonzero(k) for k in kernels) / sum(k.size for k in kernels) >= 0.49


def test_resnet50_under_dp_is_refused_naming_batchnorm(tmp_path):
    with pytest.raises(tfresp.IncompatibleModelError, match="BatchNormalization.*LayerNormalization"):
        tfresp.fit({**CFG, "privacy": {"target_epsilon": 8}}, model=resnet_builder, out=tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()
