"""tfresp/data/compact.py + TabularPreprocessor.transform_compact: the compact rows expand to exactly the dense
encoding (the TF transform the SavedModel serves), and row_gather batches equal tf.gather batches."""
import numpy as np
import pytest
import tensorflow as tf

from tfresp.data.compact import CompactRows
from tfresp.data.dataset import make_dataset
from tfresp.data.preprocess import TabularPreprocessor, declared_numeric
from tfresp.data.sources import load_adult
from tfresp.data.stream import row_gather


@pytest.fixture(scope="module")
def adult():
    df = load_adult()[0]["train"].iloc[:3000].reset_index(drop=True)
    cols = [c for c in df.columns if c not in ("income", "sex", "race")]
    return df, cols


def _oracle(pre, df):
    return pre._transform_block(df)  # the serving TF transform on the whole frame at once


def test_compact_expands_to_the_dense_encoding(adult):
    df, cols = adult
    fit = df.iloc[:1500]
    pre = TabularPreprocessor.fit(fit, cols)
    # rows from outside the fit: categories unseen in the vocabulary (all-zero one-hot), whitespace, missing
    other = df.iloc[1500:].copy()
    other.loc[other.index[:5], "workclass"] = "never-seen"
    other.loc[other.index[5:10], "occupation"] = "  " + other.loc[other.index[5:10], "occupation"].astype(str) + " "
    other.loc[other.index[10:15], "native_country"] = np.nan
    other = other.reset_index(drop=True)
    dense = _oracle(pre, other)
    rows = pre.transform_compact(other)
    assert isinstance(rows, CompactRows) and rows.shape == dense.shape and len(rows) == len(other)
    assert rows.nbytes * 8 < dense.nbytes  # the point: ~1/10 of the dense matrix
    np.testing.assert_array_equal(np.asarray(rows), dense)
    idx = np.array([7, 0, 1499, 3, 3])
    np.testing.assert_array_equal(rows[idx], dense[idx])
    np.testing.assert_array_equal(rows.take(idx, axis=0), dense[idx])
    np.testing.assert_array_equal(rows[10:20], dense[10:20])
    np.testing.assert_array_equal(rows[4], dense[4])
    np.testing.assert_array_equal(rows[idx, 2:5], dense[idx, 2:5])
    np.testing.assert_allclose(rows.mean(axis=0), dense.mean(axis=0, dtype=np.float64), rtol=1e-6, atol=1e-7)
    # a category dtype column (a chunked CSV read) gives the same codes as the object column
    cat = other.copy()
    for c in ("workclass", "occupation", "native_country"):
        cat[c] = cat[c].astype("category")
    np.testing.assert_array_equal(np.asarray(pre.transform_compact(cat)), dense)


def test_compact_with_clip_impute_and_reordered_columns(adult):
    df, _ = adult
    cols = ["workclass", "age", "education", "hours_per_week"]  # numeric and categorical interleaved
    spec = TabularPreprocessor.fit(df, cols).spec
    spec[1] = declared_numeric("age", [20, 60])
    spec[0]["impute"] = spec[0]["vocab"][1]
    spec[3]["impute"] = 40.0
    pre = TabularPreprocessor(spec)
    assert pre._order is not None
    rows = df[cols].copy()
    rows["hours_per_week"] = rows["hours_per_week"].astype("float64")
    rows.loc[:9, "hours_per_week"] = np.nan
    rows.loc[10:19, "workclass"] = np.nan
    rows.loc[20:29, "workclass"] = ""
    np.testing.assert_array_equal(np.asarray(pre.transform_compact(rows)), _oracle(pre, rows))


def test_compact_rows_break_when_codes_are_wrong(adult):
    """The comparison above can fail: a code shifted by one gives another one-hot."""
    df, cols = adult
    pre = TabularPreprocessor.fit(df, cols)
    rows = pre.transform_compact(df)
    rows.codes[0, 0] = (rows.codes[0, 0] + 1) % rows.depths[0]
    assert not np.array_equal(rows[np.arange(5)], _oracle(pre, df.iloc[:5]))


def test_row_gather_equals_tf_gather():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = rng.integers(0, 3, 50)
    extras = {"sample_weight": rng.random(50).astype(np.float32), "g": np.array(["a", "b"] * 25, object)}
    idx = tf.constant([3, 1, 49, 1], tf.int64)
    got = row_gather((x, y, extras))(idx)
    want = tf.nest.map_structure(lambda a: tf.gather(tf.convert_to_tensor(a), idx), (x, y, extras))
    for g, w in zip(tf.nest.flatten(got), tf.nest.flatten(want)):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g.numpy(), w.numpy())


def test_make_dataset_on_compact_rows_equals_dense(adult):
    df, cols = adult
    pre = TabularPreprocessor.fit(df, cols)
    rows, dense = pre.transform_compact(df), _oracle(pre, df)
    y = np.arange(len(df)) % 2
    a = list(make_dataset(rows, y, {}, 256, shuffle=True, seed=3).take(3))
    b = list(make_dataset(dense, y, {}, 256, shuffle=True, seed=3).take(3))
    for (xa, ya, ea), (xb, yb, eb) in zip(a, b):
        assert xa.shape[1] == dense.shape[1]
        np.testing.assert_array_equal(xa.numpy(), xb.numpy())
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())



def test_compact_rows_convert_to_the_dense_tensor(adult):
    df, cols = adult
    pre = TabularPreprocessor.fit(df, cols)
    rows = pre.transform_compact(df.iloc[:50])
    np.testing.assert_array_equal(tf.convert_to_tensor(rows).numpy(), _oracle(pre, df.iloc[:50]))


def test_predictions_on_compact_rows_equal_dense(adult):
    import tf_keras as keras

    from tfresp.run.context import predict_logits

    df, cols = adult
    pre = TabularPreprocessor.fit(df, cols)
    rows, dense = pre.transform_compact(df), _oracle(pre, df)
    core = keras.Sequential([keras.layers.Dense(3, input_shape=(dense.shape[1],))])
    np.testing.assert_array_equal(predict_logits(core, rows, batch_size=256), predict_logits(core, dense, 256))
