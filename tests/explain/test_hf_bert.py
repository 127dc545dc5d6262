"""The CLS-only last-layer path for transformers BERT classifiers equals the full model."""
import numpy as np
import pytest
import tensorflow as tf

transformers = pytest.importorskip("transformers")

from tfresp.explain import _hf_bert  # noqa: E402
from tfresp.explain.predict import TokenizedTextPredictor  # noqa: E402


@pytest.fixture(scope="module")
def tiny_bert():
    cfg = transformers.BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=64, num_labels=3)
    tf.keras.utils.set_random_seed(0) if hasattr(tf, "keras") else None
    model = transformers.TFBertForSequenceClassification(cfg)
    model(input_ids=tf.zeros((1, 4), tf.int32))
    return model


def test_cls_only_equals_full_model(tiny_bert):
    rng = np.random.default_rng(1)
    ids = rng.integers(5, 200, size=(6, 20)).astype(np.int32)
    mask = np.ones_like(ids)
    for i, n in enumerate([20, 15, 9, 3, 1, 12]):
        mask[i, n:] = 0
    ids[mask == 0] = 0
    fast = _hf_bert.cls_logits_fn(tiny_bert)(tf.constant(ids), tf.constant(mask)).numpy()
    full = tiny_bert(input_ids=ids, attention_mask=mask, training=False).logits.numpy()
    np.testing.assert_allclose(fast, full, atol=1e-5)
    fn, name, diff = _hf_bert.checked(tiny_bert, 200)
    assert name == "cls-only last layer" and diff <= 1e-4


def test_tokenized_predictor_dedups_and_unsorts(tiny_bert):
    """Length-sorted, deduplicated chunks come back in the caller's order, equal to per-text calls."""
    words = {w: i + 10 for i, w in enumerate("a b c d e f g h".split())}

    def tokenize(texts):
        return [[2] + [words[w] for w in t.split()] + [3] for t in texts]

    pred = TokenizedTextPredictor(tokenize, _hf_bert.full_logits_fn(tiny_bert), max_length=16, batch_size=2)
    texts = ["a b c d e f", "a", "b c", "a", "a b c d e f", "h g f e d c b a"]
    out = pred(texts)
    assert pred.rows == 4 and pred.max_rows_per_call <= 2 and pred.traces == 1
    refs = {}
    for t in set(texts):  # one unpadded eager call per distinct text
        ids = np.array([tokenize([t])[0]], np.int32)
        refs[t] = tf.nn.softmax(tiny_bert(input_ids=ids, training=False).logits).numpy()[0]
    for t, row in zip(texts, out):
        np.testing.assert_allclose(row, refs[t], atol=1e-5)
