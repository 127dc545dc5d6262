"""Data: embedded Adult parsing, train-only preprocessing, file/memory/TFDS sources agree."""
import gzip

import numpy as np
import pandas as pd
import pytest

from tfresp.config import load_config
from tfresp.data.dataset import prepare
from tfresp.data.sources import ADULT_COLUMNS, MISSING, load_adult
from tfresp.errors import DataError


def test_adult_official_splits_parsed(shared_dir):
    frames, info = load_adult()
    assert len(frames["train"]) == 32561 and len(frames["test"]) == 16281
    assert list(frames["train"].columns) == ADULT_COLUMNS
    for df in frames.values():
        assert set(df["income"]) == {"<=50K", ">50K"}  # the test file's trailing dots are gone
        assert not (df.select_dtypes(object) == "?").any().any()
    # cross-check the missing-value mapping against a plain read of the shared original
    raw = pd.read_csv(shared_dir / "data/adult/adult.data.gz", header=None, skipinitialspace=True)
    assert (frames["train"]["workclass"] == MISSING).sum() == (raw[1] == "?").sum() > 0
    assert info["license"] == "CC-BY-4.0" and len(info["files"]["adult.data.gz"]) == 64


def test_preprocessing_fitted_on_train_only():
    cfg = load_config({"data": {"sensitive": ["sex"], "split": {"validation": 0.0}}})
    bundle = prepare(cfg)
    spec = {c["name"]: c for c in bundle.preprocessor.spec}
    train_age = bundle.train.frame["age"].astype(float)
    assert spec["age"]["mean"] == pytest.approx(train_age.mean())
    assert spec["age"]["mean"] != pytest.approx(bundle.test.frame["age"].astype(float).mean(), abs=1e-6)
    assert "sex" not in bundle.feature_columns and "income" not in bundle.feature_columns
    assert bundle.train.x.shape[1] == bundle.preprocessor.encoded_dim
    assert abs(bundle.train.x[:, bundle.preprocessor.encoded_names.index("age")].mean()) < 1e-5


def _frame(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=n), "b": rng.integers(0, 5, n).astype(float),
                         "color": rng.choice(["red", "green", "blue"], n), "g": rng.choice(["u", "v"], n),
                         "y": rng.choice(["no", "yes"], n)})


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl", "csv.gz"])
def test_file_sources_match_memory(tmp_path, fmt):
    df = _frame()
    path = tmp_path / f"d.{fmt}"
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "csv.gz":
        with gzip.open(path, "wt") as fh:
            df.to_csv(fh, index=False)
    elif fmt == "parquet":
        df.to_parquet(path)
    else:
        df.to_json(path, orient="records", lines=True)
    base = {"data": {"source": str(path), "label": "y", "sensitive": ["g"], "split": {"test": 0.25}}}
    from_file = prepare(load_config(base))
    from_mem = prepare(load_config({**base, "data": {**base["data"], "source": "memory"}}), memory=df)
    np.testing.assert_allclose(from_file.train.x, from_mem.train.x, atol=1e-5)
    np.testing.assert_array_equal(from_file.test.y, from_mem.test.y)
    assert from_file.classes == ["no", "yes"] and len(from_file.test) == 100


def test_numpy_xy_source():
    x = np.random.default_rng(0).normal(size=(200, 3))
    y = (x[:, 0] > 0).astype(int)
    bundle = prepare(load_config({"data": {"source": "memory", "label": "label", "split": {"test": 0.2}}}),
                     memory=(x, y))
    assert bundle.feature_columns == ["x0", "x1", "x2"] and bundle.num_classes == 2


def test_tfds_source_offline_with_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=60):
        bundle = prepare(load_config({"data": {"source": "tfds:iris", "label": "label", "split": {"test": 0.25}}}))
    assert len(bundle.train) + len(bundle.test) + (len(bundle.validation) if bundle.validation else 0) == 60
    assert bundle.preprocessor.encoded_dim >= 1


def test_unseen_test_label_rejected(monkeypatch):
    from tfresp.data import dataset as ds

    df = _frame()
    frames = {"train": df, "test": df.assign(y="maybe")}
    monkeypatch.setattr(ds, "load_source", lambda *a, **k: (frames, {"name": "m", "files": {}}))
    with pytest.raises(DataError, match="never seen in training"):
        prepare(load_config({"data": {"source": "memory", "label": "y"}}))


def test_make_dataset_epoch_is_a_permutation_with_aligned_extras():
    from tfresp.data.dataset import make_dataset

    n = 103
    x = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    y = np.arange(n, dtype=np.int64)
    w = np.arange(n, dtype=np.float32) / 10
    ds = make_dataset(x, y, {"sample_weight": w, "group": y % 2}, batch_size=16, shuffle=True, seed=3)
    epochs = []
    for _ in range(2):
        seen = []
        for bx, by, be in ds:
            np.testing.assert_array_equal(bx.numpy()[:, 0], by.numpy())  # rows stay aligned
            np.testing.assert_allclose(be["sample_weight"].numpy(), by.numpy() / 10, rtol=1e-6)
            np.testing.assert_array_equal(be["group"].numpy(), by.numpy() % 2)
            seen.extend(by.numpy().tolist())
        assert sorted(seen) == list(range(n))  # every row exactly once per epoch
        epochs.append(seen)
    assert epochs[0] != epochs[1] and epochs[0] != list(range(n))  # reshuffled each epoch
    again = [int(v) for _, by, _ in make_dataset(x, y, {}, 16, True, 3) for v in by.numpy()]
    assert again == epochs[0]  # seeded


# -- data checks (issue 14) ----------------------------------------------------------------------
def _prepare_memory(df, **data):
    cfg = load_config({"data": {"label": "y", "sensitive": ["g"], "split": {"test": 0.25}, **data}})
    return prepare(cfg, memory=df)


def test_every_data_problem_is_listed_in_one_error():
    df = _frame()
    df.loc[[0, 1], "y"] = "Yes"
    df.loc[[2, 3], "a"] = np.nan
    df["blob"] = [[1, 2]] * len(df)
    with pytest.raises(DataError) as exc:
        _prepare_memory(df, sensitive=["g", "nope"])
    msg = str(exc.value)
    assert msg.startswith("4 problems with the data: ")
    for part in ("`data.label`", "'Yes' (2 rows)", "`data.sensitive`", "'nope'", "'blob'", "{'a': 2}"):
        assert part in msg, part


def test_numbers_written_as_text_parse_to_their_values():
    df = _frame()
    df["money"] = ["$1,200.50", "12%", "-3", "1,000,000"] * (len(df) // 4)
    bundle = _prepare_memory(df)
    parsed = pd.concat([bundle.train.frame, bundle.test.frame])["money"]
    assert parsed.dtype == np.float64 and set(parsed) == {1200.5, 12.0, -3.0, 1e6}
    assert "money" in bundle.summary()["parsed_numeric"]


def test_dp_imputation_uses_only_the_declared_public_value():
    df = _frame()
    df.loc[::5, "a"] = np.nan
    cfg = load_config({"data": {"label": "y", "sensitive": ["g"], "split": {"test": 0.25}, "missing": "impute",
                                "impute_values": {"a": 7.0}}, "privacy": {"target_epsilon": 3.0}})
    bundle = prepare(cfg, memory=df)
    spec = {c["name"]: c for c in bundle.preprocessor.spec}
    assert spec["a"]["impute"] == 7.0
    assert bundle.summary()["imputation"]["a"] == {"value": 7.0, "from": "declared in data.impute_values"}
    filled = bundle.train.frame["a"].to_numpy()
    assert not np.isnan(filled).any() and (filled == 7.0).sum() > 0


def test_utf8_bytes_are_text_but_binary_bytes_are_refused():
    df = _frame()
    df["y"] = df["y"].map(lambda v: v.encode())  # what a tf.data string tensor yields
    assert _prepare_memory(df).classes == ["no", "yes"]
    df["blob"] = [b"\xff\xfe"] * len(df)
    with pytest.raises(DataError, match="'blob' holds \\['bytes'\\]"):
        _prepare_memory(df)
