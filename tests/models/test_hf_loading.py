"""Hugging Face checkpoints (safetensors with PyTorch names, or tf_model.h5) load into the functional BERT.

The reference is transformers' own TF implementation of each family, built tiny and randomly initialised here
(no downloads). Its weights are written to ``model.safetensors`` under PyTorch names by transformers' TF->PT name
converter (``convert_tf_weight_name_to_pt_weight_name``), an independent oracle for tfresp's hand-written tables.
"""
import json

import numpy as np
import pytest
import tensorflow as tf

from tfresp.errors import ConfigError, IncompatibleModelError
from tfresp.models import bert, hf_loading

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64)


def _reference(family: str):
    import transformers as tr

    if family == "bert":
        return tr.TFBertModel(tr.BertConfig(**TINY, type_vocab_size=2))
    if family == "roberta":
        return tr.TFRobertaModel(tr.RobertaConfig(**{**TINY, "max_position_embeddings": 66}, type_vocab_size=1,
                                                  pad_token_id=1, layer_norm_eps=1e-5))
    if family == "electra":
        return tr.TFElectraModel(tr.ElectraConfig(**TINY, embedding_size=16))
    return tr.TFDistilBertModel(tr.DistilBertConfig(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                                                    max_position_embeddings=64))


def _inputs(pad_id: int):
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 99, size=(3, 11)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids[mask == 0] = pad_id
    return ids, mask


def write_pytorch_safetensors(hf_model, directory, prefix_kept: bool = True):
    """``model.safetensors`` with the PyTorch names transformers would give these TF weights."""
    from safetensors.numpy import save_file
    from transformers.modeling_tf_pytorch_utils import convert_tf_weight_name_to_pt_weight_name

    tensors = {}
    for w in hf_model.weights:
        name, transpose = convert_tf_weight_name_to_pt_weight_name(w.name, tf_weight_shape=w.shape)
        value = w.numpy()
        if transpose.name == "SIMPLE":
            value = value.T
        if not prefix_kept:  # a base-model save (BertModel) has no "bert." prefix
            name = name.split(".", 1)[1]
        tensors[name] = np.ascontiguousarray(value)
    tensors["classifier.weight"] = np.zeros((2, 32), np.float32)  # a task head: ignored by the encoder
    save_file(tensors, str(directory / hf_loading.SAFETENSORS))
    (directory / "config.json").write_text(hf_model.config.to_json_string())
    return tensors


@pytest.fixture(scope="module", params=["bert", "roberta", "distilbert", "electra"])
def family(request, tmp_path_factory):
    tf.keras.utils.set_random_seed(0)
    hf = _reference(request.param)
    pad = hf.config.pad_token_id or 0
    ids, mask = _inputs(pad)
    ref = hf(input_ids=ids, attention_mask=mask, training=False).last_hidden_state.numpy()
    st_dir, h5_dir = tmp_path_factory.mktemp(request.param + "_st"), tmp_path_factory.mktemp(request.param + "_h5")
    tensors = write_pytorch_safetensors(hf, st_dir, prefix_kept=request.param != "bert")
    hf.save_pretrained(str(h5_dir))  # transformers' TF save: config.json + tf_model.h5
    return {"name": request.param, "ids": ids, "mask": mask, "ref": ref, "st": st_dir, "h5": h5_dir,
            "n_tensors": len(hf.weights), "tensors": tensors}


def _hidden(directory, ids, mask):
    cfg, weights = hf_loading.read_checkpoint(directory)
    model = bert.build_hidden_model(cfg)
    loaded = bert.assign_named_weights(model, weights)
    assert len(loaded) == len(model.weights)
    return model({"input_ids": tf.constant(ids), "attention_mask": tf.constant(mask)}, training=False).numpy(), cfg


@pytest.mark.parametrize("source", ["st", "h5"])
def test_hidden_states_equal_the_transformers_reference(family, source):
    ours, cfg = _hidden(family[source], family["ids"], family["mask"])
    assert cfg.model_type == family["name"]
    real = family["mask"].astype(bool)
    diff = float(np.max(np.abs(ours - family["ref"])[real]))
    print(f"{family['name']} from {source}: max |hidden - reference| = {diff:.2e}")
    assert diff < 1e-4


def test_every_encoder_tensor_is_used_and_heads_are_ignored(family):
    _, weights = hf_loading.read_checkpoint(family["st"])
    assert len(weights) == family["n_tensors"]  # all encoder tensors, no classifier head
    assert not any("classifier" in k for k in weights)


def test_a_wrong_name_table_breaks_equality(family, monkeypatch):
    """The test can fail: swap key and value in the family's table and the hidden states move."""
    if family["name"] == "distilbert":
        swap = {".attention.self.key.": ".attention.self.value.", ".attention.self.value.": ".attention.self.key."}
        table = [(p, swap.get(r, r)) for p, r in hf_loading._RENAMES["distilbert"]]
    else:
        table = [(r"\.self\.key\.", ".self.TMP."), (r"\.self\.value\.", ".self.key."),
                 (r"\.self\.TMP\.", ".self.value.")]
    monkeypatch.setitem(hf_loading._RENAMES, family["name"], table)
    ours, _ = _hidden(family["st"], family["ids"], family["mask"])
    assert np.max(np.abs(ours - family["ref"])) > 1e-3


def test_roberta_positions_skip_the_padding_index():
    ids = tf.constant([[0, 5, 6, 2, 1, 1]])
    pos = bert.PositionIds(padding_idx=1)(ids).numpy()
    np.testing.assert_array_equal(pos, [[2, 3, 4, 5, 1, 1]])
    cfg = bert.BertConfig(max_position=66, position_padding_idx=1)
    assert cfg.longest_input == 64


def test_unsupported_families_and_activations_are_refused(tmp_path):
    with pytest.raises(IncompatibleModelError, match="model_type='gpt2'.*Remedy"):
        hf_loading.config_from_hf({"model_type": "gpt2"})
    with pytest.raises(IncompatibleModelError, match="gelu_new"):
        hf_loading.config_from_hf({"model_type": "bert", "hidden_act": "gelu_new", **TINY})
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", **TINY}))
    with pytest.raises(ConfigError, match="model.checkpoint"):
        bert.resolve_checkpoint(tmp_path)  # config.json but no weights


def tiny_bert_dir(directory, tokenizer_json):
    """A tiny random BERT as a Hub-style dir (safetensors, PyTorch names) with a real ``tokenizer.json``."""
    import shutil

    import transformers as tr

    directory.mkdir(parents=True, exist_ok=True)
    vocab = len(json.loads(open(tokenizer_json, encoding="utf-8").read())["model"]["vocab"])
    tf.keras.utils.set_random_seed(0)
    hf = tr.TFBertModel(tr.BertConfig(**{**TINY, "vocab_size": vocab}))
    hf(input_ids=np.ones((1, 4), np.int32))
    write_pytorch_safetensors(hf, directory)
    shutil.copyfile(tokenizer_json, directory / "tokenizer.json")
    return directory


def test_sharded_safetensors_load_like_one_file(family, tmp_path):
    from safetensors.numpy import save_file

    names = sorted(family["tensors"])
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in halves.items():
        save_file({k: family["tensors"][k] for k in keys}, str(tmp_path / shard))
    index = {"weight_map": {k: shard for shard, keys in halves.items() for k in keys}}
    (tmp_path / hf_loading.SAFETENSORS_INDEX).write_text(json.dumps(index))
    (tmp_path / "config.json").write_text((family["st"] / "config.json").read_text())
    whole, sharded = hf_loading.read_checkpoint(family["st"])[1], hf_loading.read_checkpoint(tmp_path)[1]
    assert sorted(whole) == sorted(sharded) and all(np.array_equal(whole[k], sharded[k]) for k in whole)


def test_a_normalizer_the_in_graph_tokenizer_cannot_reproduce_is_refused(tmp_path):
    from tokenizers import Tokenizer, models, normalizers

    from tfresp.data.text import checkpoint_tokenizer

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    tok.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ConfigError, match="accent stripping"):
        checkpoint_tokenizer(tmp_path)
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=None)
    tok.save(str(tmp_path / "tokenizer.json"))
    assert checkpoint_tokenizer(tmp_path) == {"vocab": list(vocab), "lowercase": False, "file": "tokenizer.json"}
