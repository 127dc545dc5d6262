"""Text data: trained WordPiece, in-graph encoding, dynamic padding, splits and bad input."""
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.conftest import TWEETS
from tfresp.config import load_config
from tfresp.data.dataset import make_dataset, prepare
from tfresp.data.text import SPECIAL_TOKENS, TextPreprocessor, TokenizedText, train_wordpiece, trim_padding
from tfresp.errors import DataError


def tweets_cfg(**over):
    cfg = {"name": "t", "data": {"source": str(TWEETS), "text": "text", "label": "sentiment", "max_rows": 300,
                                 "max_length": 32, "tokenizer": {"vocab_size": 400},
                                 "split": {"test": 0.2, "validation": 0.1}},
           "model": {"kind": "bert", "bert": {"hidden": 32, "layers": 1, "heads": 2}}}
    cfg.update(over)
    return load_config(cfg)


@pytest.fixture(scope="module")
def bundle():
    if not TWEETS.exists():
        pytest.skip("tweets not present")
    return prepare(tweets_cfg())


def test_bundle_shapes_and_stratified_splits(bundle):
    assert bundle.kind == "text" and bundle.classes == ["negative", "neutral", "positive"]
    n = len(bundle.train) + len(bundle.validation) + len(bundle.test)
    assert n == 300 and len(bundle.test) == pytest.approx(60, abs=2)
    x = bundle.train.x
    assert isinstance(x, TokenizedText) and x["input_ids"].shape == (len(bundle.train), 32)
    pre = bundle.preprocessor
    lengths = x["attention_mask"].sum(1)
    rows = np.arange(len(lengths))
    assert np.all(x["input_ids"][:, 0] == pre.cls_id)
    assert np.all(x["input_ids"][rows, lengths - 1] == pre.sep_id)
    assert np.all(x["input_ids"][x["attention_mask"] == 0] == pre.pad_id)
    # the training split's label balance is preserved in the test split (stratified)
    tr = np.bincount(bundle.train.y, minlength=3) / len(bundle.train)
    te = np.bincount(bundle.test.y, minlength=3) / len(bundle.test)
    assert np.max(np.abs(tr - te)) < 0.05
    assert bundle.summary()["text"]["vocab_size"] == pre.vocab_size <= 400


def test_trained_vocab_is_from_train_split_only(bundle):
    vocab = bundle.preprocessor.vocab
    assert vocab[:5] == SPECIAL_TOKENS
    expected = train_wordpiece(bundle.train.frame["text"].astype(str), 400)
    # HF's WordPiece trainer breaks frequency ties nondeterministically, so compare as sets (the vocab used
    # is saved with the run, which is what serving and reloading rely on)
    a, b = set(vocab), set(expected)
    assert len(a & b) / len(a | b) > 0.97
    assert sorted(vocab[5:]) == list(vocab[5:])


def test_encode_truncates_and_pads_dynamically():
    vocab = SPECIAL_TOKENS + ["a", "b", "##b", "hello"]
    pre = TextPreprocessor(vocab, "text", max_length=6, lowercase=True)
    out = pre.encode(tf.constant(["Hello a bb", "a " * 20, ""]))
    ids = out["input_ids"].numpy()
    assert ids.shape == (3, 6)  # longest row, capped at max_length
    assert ids[0].tolist() == [2, 8, 5, 6, 7, 3]
    assert ids[1].tolist() == [2, 5, 5, 5, 5, 3]  # truncated to max_length - 2 pieces
    assert ids[2].tolist() == [2, 3, 0, 0, 0, 0] and out["attention_mask"].numpy()[2].tolist() == [1, 1, 0, 0, 0, 0]
    out = pre.encode(tf.constant(["a", "xyz"]))
    assert out["input_ids"].numpy().tolist() == [[2, 5, 3], [2, 1, 3]]  # unknown word -> [UNK]


def test_trim_padding_rounds_to_multiple_of_8():
    mask = np.zeros((4, 64), np.int32)
    mask[0, :11] = 1
    mask[1, :3] = 1
    x = {"input_ids": np.arange(256, dtype=np.int32).reshape(4, 64), "attention_mask": mask}
    tx, _, _ = trim_padding({k: tf.constant(v) for k, v in x.items()}, None, {})
    assert tx["input_ids"].shape == (4, 16)
    ds = make_dataset(TokenizedText(x), np.zeros(4, np.int64), {}, batch_size=2, shuffle=False, seed=0)
    widths = [b[0]["input_ids"].shape[1] for b in ds]
    assert widths == [16, 8]


def test_tokenized_text_slices_like_an_array(bundle):
    x = bundle.test.x
    sub = x[:5]
    assert isinstance(sub, TokenizedText) and sub.shape == (5, 32)
    assert np.array_equal(x[np.array([3, 1])]["input_ids"], x["input_ids"][[3, 1]])


def test_missing_text_column_is_a_data_error(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"body": ["a b", "c d"] * 10, "y": [0, 1] * 10}).to_csv(path, index=False)
    cfg = load_config({"data": {"source": str(path), "text": "text", "label": "y"}, "model": {"kind": "bert"}})
    with pytest.raises(DataError, match="'text'"):
        prepare(cfg)


def test_jsonl_source_and_mlm_without_labels(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = pd.DataFrame({"body": [f"tweet number {i} about cars and planes" for i in range(50)]})
    rows.to_json(path, orient="records", lines=True)
    cfg = load_config({"task": "mlm", "data": {"source": str(path), "text": "body", "max_length": 16,
                                               "tokenizer": {"vocab_size": 120, "min_frequency": 1},
                                               "split": {"test": 0.2, "validation": 0.0}},
                       "model": {"kind": "bert"}})
    b = prepare(cfg)
    assert b.classes == [] and len(b.train) == 40 and len(b.test) == 10 and b.validation is None
    assert np.all(b.train.y == 0)


def test_preprocessor_save_load_roundtrip(bundle, tmp_path):
    pre = bundle.preprocessor
    pre.save(tmp_path)
    again = TextPreprocessor.load(tmp_path)
    texts = bundle.test.frame["text"].astype(str).tolist()[:20]
    a = pre.encode(tf.constant(texts))["input_ids"].numpy()
    b = again.encode(tf.constant(texts))["input_ids"].numpy()
    assert np.array_equal(a, b)
