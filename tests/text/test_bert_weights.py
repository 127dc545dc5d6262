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
