"""tfresp/data/stream.py: the block-at-a-time pieces of the data path return what the whole-table code did."""
import hashlib

import numpy as np
import pandas as pd
import pytest

from tfresp.data import stream
from tfresp.data.preprocess import TabularPreprocessor
from tfresp.data.sources import load_adult, load_file


@pytest.fixture(scope="module")
def adult():
    df = load_adult()[0]["train"].iloc[:2500].reset_index(drop=True)
    cols = [c for c in df.columns if c not in ("income", "sex", "race")]
    return df, TabularPreprocessor.fit(df, cols)


def test_blocks_equal_the_whole_table_transform(adult, monkeypatch):
    df, pre = adult
    whole = pre._transform_block(df)
    calls = []
    orig = pre._transform_block

    def spy(block):
        calls.append(len(block))
        return orig(block)

    monkeypatch.setattr(pre, "_transform_block", spy)
    monkeypatch.setattr(stream, "BLOCK_ROWS", 1000)
    out = stream.transform_in_blocks(pre._transform_block, df, pre.encoded_dim, rows=1000)
    assert calls == [1000, 1000, 500]
    assert out.dtype == np.float32 and out.shape == whole.shape
    np.testing.assert_array_equal(out, whole)
    # the preprocessor's own transform goes through the blocks (default block size: one call for 2,500 rows)
    calls.clear()
    np.testing.assert_array_equal(pre.transform_frame(df), whole)
    assert calls == [2500]
    # a frame whose index is not 0..n-1 (a split's rows): positions, not labels, are blocked
    shuffled = df.sample(frac=1.0, random_state=0)
    np.testing.assert_array_equal(stream.transform_in_blocks(orig, shuffled, pre.encoded_dim, rows=700),
                                  orig(shuffled))


def test_sha256_file_is_the_digest_of_the_bytes(tmp_path):
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)
    path = tmp_path / "x.csv"
    path.write_bytes(data)
    assert stream.sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert stream.sha256_file(path, block=1000) == hashlib.sha256(data).hexdigest()


def test_load_file_records_the_streamed_digest(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}).to_csv(path, index=False)
    frames, info = load_file(str(path))
    assert info["files"]["d.csv"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert frames["train"]["b"].tolist() == ["x", "y", "z"]


def test_plain_index_copies_only_when_needed():
    df = pd.DataFrame({"a": np.arange(5)})
    assert stream.plain_index(df) is df
    sub = df.iloc[[3, 1]]
    out = stream.plain_index(sub)
    assert out is not sub and list(out.index) == [0, 1] and out["a"].tolist() == [3, 1]
    assert stream.plain_index(df.iloc[2:]).index.tolist() == [0, 1, 2]


def test_row_hashes_in_blocks_equal_the_whole_table_hashes():
    df = load_adult()[0]["test"].iloc[:1003]
    cols = ["age", "workclass", "education", "capital_gain", "income", "not_a_column"]
    present = [c for c in cols if c in df.columns]
    whole = pd.util.hash_pandas_object(df[present].astype(str), index=False).to_numpy()
    out = stream.row_hashes(df, cols, rows=100)
    assert out.dtype == np.uint64 and len(out) == 1003
    np.testing.assert_array_equal(out, whole)
    np.testing.assert_array_equal(stream.row_hashes(df, cols), whole)
    assert len(stream.row_hashes(df.iloc[:0], cols)) == 0
