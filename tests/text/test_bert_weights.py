"""The functional BERT reproduces transformers' TFBertModel on the real MiniLM checkpoint."""
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import MINILM
from tfresp.data.text import TextPreprocessor, read_vocab
from tfresp.models import bert

TEXTS = ["@united thanks for the great flight! http://t.co/abc #happy", "Café au lait, naïve résumé...",
         "short", "I don't like Mondays :( it's 2am & i can't sleep!!!", "   ", "ÃƒÂ© mis-encoded bytes"]


@pytest.fixture(scope="module")
def minilm():
    if not (MINILM / "tf_model.h5").exists():
        pytest.skip("MiniLM checkpoint not present")
    return bert.resolve_checkpoint(MINILM)


def test_hidden_states_match_transformers(minilm):
    from transformers import TFBertModel

    hf = TFBertModel.from_pretrained(str(MINILM))
    model = bert.build_hidden_model(minilm["config"])
    loaded = bert.assign_named_weights(model, minilm["weights"]())
    assert len(loaded) == len(model.weights) == 101  # 103 checkpoint tensors minus the pooler
    pre = TextPreprocessor(minilm["vocab"], "text", 40, minilm["lowercase"])
    x = pre.encode(tf.constant(TEXTS))
    ours = model(x, training=False).numpy()
    ref = hf(input_ids=x["input_ids"], attention_mask=x["attention_mask"], training=False).last_hidden_state.numpy()
    real = x["attention_mask"].numpy().astype(bool)
    assert np.max(np.abs(ours - ref)[real]) < 1e-4
    # the same weights in a classifier: the pooler is loaded too
    clf = bert.build_classifier(minilm["config"], num_classes=3)
    assert "pooler/dense/kernel" in bert.assign_named_weights(clf, minilm["weights"]())


def test_in_graph_tokenizer_matches_hf_tokenizer(minilm):
    from transformers import AutoTokenizer

    import pandas as pd
    from tests.conftest import TWEETS

    texts = TEXTS + pd.read_csv(TWEETS, nrows=300, encoding_errors="replace")["text"].astype(str).tolist()
    tok = AutoTokenizer.from_pretrained(str(MINILM))
    pre = TextPreprocessor(minilm["vocab"], "text", 64, minilm["lowercase"])
    ids = pre.encode(tf.constant(texts), pad_to=64)["input_ids"].numpy()
    ref = tok(texts, truncation=True, max_length=64)["input_ids"]
    agree = np.mean([list(ids[i][: len(r)]) == r and ids[i][len(r):].sum() == 0 for i, r in enumerate(ref)])
    assert agree >= 0.98, agree


def test_shape_mismatch_names_the_layer(minilm):
    small = bert.BertConfig(vocab_size=minilm["config"].vocab_size, hidden_size=64, num_layers=1, num_heads=2,
                            intermediate_size=128, max_position=64)
    model = bert.build_hidden_model(small)
    from tfresp.errors import IncompatibleModelError

    with pytest.raises(IncompatibleModelError, match="embeddings_word"):
        bert.assign_named_weights(model, minilm["weights"]())


# -- the same MiniLM as a PyTorch-named safetensors dir with only tokenizer.json --------------------------
@pytest.fixture(scope="module")
def minilm_safetensors(minilm, tmp_path_factory):
    """MiniLM's tf_model.h5 rewritten as ``model.safetensors`` (PyTorch names, by transformers' converter)."""
    import shutil

    from transformers import TFBertModel

    from tests.models.test_hf_loading import write_pytorch_safetensors

    d = tmp_path_factory.mktemp("minilm_safetensors")
    write_pytorch_safetensors(TFBertModel.from_pretrained(str(MINILM)), d)
    shutil.copyfile(MINILM / "tokenizer.json", d / "tokenizer.json")  # no vocab.txt: tokenizer.json is the source
    return d


def test_minilm_from_safetensors_equals_the_h5_path(minilm, minilm_safetensors):
    from transformers import TFBertModel

    ck = bert.resolve_checkpoint(minilm_safetensors)
    assert (ck["weights_file"], ck["tokenizer_file"]) == ("model.safetensors", "tokenizer.json")
    assert ck["config"] == minilm["config"] and ck["lowercase"] == minilm["lowercase"]
    assert ck["vocab"] == read_vocab(MINILM / "vocab.txt")  # tokenizer.json ids == vocab.txt lines
    st, h5 = ck["weights"](), minilm["weights"]()
    assert sorted(st) == sorted(h5) and len(st) == 103
    assert all(np.array_equal(st[k], h5[k]) for k in st)
    model = bert.build_hidden_model(ck["config"])
    bert.assign_named_weights(model, st)
    pre = TextPreprocessor(ck["vocab"], "text", 40, ck["lowercase"])
    x = pre.encode(tf.constant(TEXTS))
    ref = TFBertModel.from_pretrained(str(MINILM))(input_ids=x["input_ids"], attention_mask=x["attention_mask"],
                                                   training=False).last_hidden_state.numpy()
    diff = np.max(np.abs(model(x, training=False).numpy() - ref)[x["attention_mask"].numpy().astype(bool)])
    print(f"MiniLM from safetensors: max |hidden - transformers| = {diff:.2e}")
    assert diff < 1e-4


def test_tokenizer_json_ids_match_the_tokenizers_package(minilm_safetensors):
    """The in-graph tokenizer built from tokenizer.json gives the ids HF ``tokenizers`` gives (oracle)."""
    import pandas as pd
    from tokenizers import Tokenizer

    from tests.conftest import TWEETS
    from tfresp.data.text import checkpoint_tokenizer

    texts = TEXTS + pd.read_csv(TWEETS, nrows=300, encoding_errors="replace")["text"].astype(str).tolist()
    tok = checkpoint_tokenizer(minilm_safetensors)
    pre = TextPreprocessor(tok["vocab"], "text", 64, tok["lowercase"])
    ids = pre.encode(tf.constant(texts), pad_to=64)["input_ids"].numpy()
    ref_tok = Tokenizer.from_file(str(minilm_safetensors / "tokenizer.json"))
    ref_tok.enable_truncation(64)
    ref_tok.no_padding()
    ref = [e.ids for e in ref_tok.encode_batch(texts)]
    agree = np.mean([list(ids[i][: len(r)]) == r and ids[i][len(r):].sum() == 0 for i, r in enumerate(ref)])
    assert agree >= 0.98, agree


def test_a_bpe_tokenizer_is_refused_with_a_reason(tmp_path):
    from tokenizers import Tokenizer, models

    from tfresp.data.text import checkpoint_tokenizer
    from tfresp.errors import ConfigError

    Tokenizer(models.BPE()).save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ConfigError, match="WordPiece.*'BPE'.*Remedy"):
        checkpoint_tokenizer(tmp_path)


@pytest.mark.slow  # MiniLM (22.7M parameters) fine-tuned a few steps on CPU: ~30-60 s
def test_config_fine_tunes_from_a_safetensors_dir(minilm_safetensors, tmp_path):
    from tests.conftest import TWEETS
    from tfresp.run.builder import build_and_run
    from tfresp.config import load_config

    cfg = load_config({"name": "st", "data": {"source": str(TWEETS), "text": "text", "label": "sentiment",
                                              "max_rows": 96, "max_length": 16, "split": {"test": 0.25,
                                                                                          "validation": 0.0}},
                       "model": {"kind": "checkpoint", "checkpoint": str(minilm_safetensors), "dropout": 0.0},
                       "train": {"epochs": 1, "batch_size": 24, "learning_rate": 5e-5},
                       "export": {"saved_model": False}})
    run = build_and_run(cfg, out=tmp_path / "run", quiet=True)
    m = run.report["model"]
    assert m["checkpoint_kind"] == "transformers" and m["loaded_weights"] == 103
    assert run.report["data"]["text"]["tokenizer"]["file"] == "tokenizer.json"
    assert 0.0 <= run.report["evaluation"]["test"]["accuracy"] <= 1.0
