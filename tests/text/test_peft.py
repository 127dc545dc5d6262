"""LoRA and adapters: parameter counts, freezing, identity at init, exact merge for export."""
import numpy as np
import pytest
import tensorflow as tf

from tfresp.config import load_config
from tfresp.errors import ConfigError
from tfresp.models import bert, peft

CFG = bert.BertConfig(vocab_size=200, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                      max_position=32, dropout=0.0, attention_dropout=0.0)


def model_cfg(**model):
    return load_config({"data": {"source": "x.csv", "text": "t", "label": "y"},
                        "model": {"kind": "bert", **model}}).model


def inputs(rows=5, length=12, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 200, size=(rows, length)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[0, 8:] = 0
    return {"input_ids": tf.constant(ids), "attention_mask": tf.constant(mask)}


def n_params(weights):
    return int(sum(np.prod(w.shape) for w in weights))


def test_lora_trainable_count_and_merge_is_exact():
    mc = model_cfg(lora={"rank": 4, "alpha": 8, "targets": ["query", "value"]})
    core = bert.build_classifier(CFG, 3, peft=peft.parse(mc))
    info = peft.apply_trainability(core, mc)
    h = CFG.hidden_size
    lora_expected = CFG.num_layers * 2 * (h * 4 + 4 * h)
    head = (h * h + h) + (h * 3 + 3)
    assert info["peft"]["peft_parameters"] == lora_expected
    assert n_params(core.trainable_weights) == lora_expected + head
    # B starts at zero: the LoRA model equals the plain model with the same base weights
    x = inputs()
    for layer in core.layers:  # make B non-zero so the merge has something to do
        if layer.name.endswith("_lora_b"):
            layer.set_weights([np.random.default_rng(1).normal(0, 0.5, layer.get_weights()[0].shape)])
    merged = bert.merge_lora(core, CFG, 3, 32, mc)
    assert not any("_lora_" in l.name for l in merged.layers)
    assert n_params(merged.weights) == n_params(core.weights) - lora_expected
    np.testing.assert_allclose(merged(x).numpy(), core(x).numpy(), atol=1e-6)
    # and it really differs from the un-merged base weights
    plain = bert.build_classifier(CFG, 3)
    for layer in plain.layers:
        if layer.weights:
            layer.set_weights(core.get_layer(layer.name).get_weights())
    assert np.max(np.abs(plain(x).numpy() - core(x).numpy())) > 1e-4


def test_merge_matches_formula_for_one_layer():
    mc = model_cfg(lora={"rank": 2, "alpha": 6, "targets": ["value"]})
    core = bert.build_classifier(CFG, 2, peft=peft.parse(mc))
    rng = np.random.default_rng(0)
    b = rng.normal(size=(2, 32)).astype(np.float32)
    core.get_layer("layer_1_value_lora_b").set_weights([b])
    merged = bert.merge_lora(core, CFG, 2, 32, mc)
    w = core.get_layer("layer_1_value").get_weights()[0]
    a = core.get_layer("layer_1_value_lora_a").get_weights()[0]
    np.testing.assert_allclose(merged.get_layer("layer_1_value").get_weights()[0], w + 3.0 * a @ b, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_array_equal(merged.get_layer("layer_0_value").get_weights()[0],
                                  core.get_layer("layer_0_value").get_weights()[0])


def test_adapters_start_as_identity_and_train_only_adapters_ln_head():
    mc = model_cfg(adapters={"size": 8})
    core = bert.build_classifier(CFG, 3, peft=peft.parse(mc))
    plain = bert.build_classifier(CFG, 3)
    for layer in plain.layers:
        if layer.weights:
            layer.set_weights(core.get_layer(layer.name).get_weights())
    x = inputs()
    np.testing.assert_allclose(core(x).numpy(), plain(x).numpy(), atol=1e-6)
    peft.apply_trainability(core, mc)
    names = {l.name for l in core.layers if l.trainable_weights}
    assert "layer_0_query" not in names and "embeddings_word" not in names
    assert {"layer_0_attention_adapter_down", "layer_1_output_adapter_up", "layer_0_attention_ln",
            "classifier", "pooler"} <= names


@pytest.mark.parametrize("freeze,frozen", [("embeddings", {"embeddings_word", "embeddings_ln"}),
                                           (1, {"embeddings_word", "layer_0_query", "layer_0_output_ln"}),
                                           ("all-but-head", {"layer_1_output", "embeddings_position"})])
def test_freeze_options(freeze, frozen):
    core = bert.build_classifier(CFG, 3)
    names = set(bert.apply_freeze(core, freeze, CFG.num_layers))
    assert frozen <= names
    assert "classifier" not in names and "pooler" not in names
    if freeze == 1:
        assert "layer_1_query" not in names


def test_bad_peft_config_lists_every_problem():
    with pytest.raises(ConfigError) as err:
        peft.parse(model_cfg(lora={"rank": 0, "targets": ["qurey"], "alpah": 3}))
    text = str(err.value)
    assert "model.lora.rank" in text and "model.lora.targets" in text and "model.lora.alpah" in text
