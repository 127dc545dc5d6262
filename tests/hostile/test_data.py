"""Hostile data through the CLI (in-process ``tfresp.cli.main``: TensorFlow is already loaded)."""
import numpy as np
import pandas as pd
import pytest

from tests.hostile.conftest import base_config, frame
from tests.hostile.harness import assert_clean_error, listing, run_inprocess, tree_hash, write_yaml


def _fit(work, cfg, *extra):
    write_yaml(work / "bad.yaml", cfg)
    h = tree_hash(work)
    rc, out, err = run_inprocess(["fit", work / "bad.yaml", "--out", work / "runs" / "r", "--quiet", *extra], work)
    return rc, out, err, h


def _check(work, rc, out, err, h, field):
    line = assert_clean_error(rc, out, err, field)
    assert listing(work / "runs") == [], "a run/staging/partial dir was left behind"
    assert tree_hash(work) == h
    return line


def _csv(work, df, name="d.csv", **kw):
    df.to_csv(work / name, index=False, **kw)
    return work / name


def _case(work, df=None, field="data", raw: bytes = None, name="d.csv", **over):
    if raw is not None:
        (work / name).write_bytes(raw)
        src = work / name
    else:
        src = _csv(work, df, name)
    rc, out, err, h = _fit(work, base_config(src, **over))
    return _check(work, rc, out, err, h, field)


def test_missing_data_file(work):
    assert "not found" in _case(work, frame(), "data.source", data={"source": str(work / "nope.csv")})


def test_data_source_is_a_directory(work):
    (work / "dir.csv").mkdir()
    _case(work, frame(), "data.source", data={"source": str(work / "dir.csv")})


def test_empty_data_file(work):
    assert "empty" in _case(work, field="data.source", raw=b"")


def test_header_only_csv(work):
    _case(work, field="data.source", raw=b"a,b,g,y\n")


def test_unknown_file_format(work):
    _case(work, field="data.source", raw=b"a b g y\n1 2 3 4\n", name="d.txt")


def test_duplicate_column_names(work):
    _case(work, field="data.source", raw=b"a,a,g,y\n1,2,f,0\n3,4,m,1\n5,6,f,0\n")


def test_label_column_missing(work):
    _case(work, frame().drop(columns="y"), "data.label")


def test_sensitive_column_missing(work):
    _case(work, frame(), "data.sensitive", data={"sensitive": ["gender"]})


def test_sensitive_attribute_with_one_group(work):
    df = frame().assign(g="f")
    assert "single group" in _case(work, df, "data.sensitive")


def test_label_with_one_class(work):
    assert "single class" in _case(work, frame().assign(y=1), "data.label")


def test_nan_labels(work):
    df = frame()
    df.loc[3, "y"] = np.nan
    _case(work, df, "data.label")


def test_nan_features(work):
    df = frame()
    df.loc[[1, 7], "a"] = np.nan
    assert "'a'" in _case(work, df, "data")


def test_infinite_features(work):
    df = frame()
    df.loc[5, "a"] = np.inf
    assert "infinite" in _case(work, df, "data")


def test_test_file_with_an_unseen_label_class(work):
    test = frame(60, seed=1)
    test.loc[0, "y"] = 7
    _csv(work, test, "test.csv")
    assert "never seen" in _case(work, frame(), "data.label",
                                 data={"split": {"test": str(work / "test.csv"), "validation": 0.1}})


def test_batch_larger_than_the_training_set(work):
    assert "training rows" in _case(work, frame(), "train.batch_size", train={"batch_size": 5000})


def test_features_list_with_the_label(work):
    _case(work, frame(), "data.features", data={"features": ["a", "y"]})


def test_mis_encoded_and_unicode_text_is_read_not_crashed(work):
    """Invalid UTF-8 bytes are replaced (U+FFFD) and unicode values/column names work: the run succeeds."""
    df = frame()
    df["b"] = df["b"].map({"red": "r\u00f6t \U0001F600", "green": "gr\u00fcn", "blue": "\u84dd"})
    raw = df.to_csv(index=False).encode("utf-8").replace("gr\u00fcn".encode(), b"gr\xfcn")  # latin-1 byte
    (work / "d.csv").write_bytes(raw.replace(b"a,b,g,y", "\u00e4,b,g,y".encode()))
    write_yaml(work / "ok.yaml", base_config(work / "d.csv"))
    rc, out, err = run_inprocess(["fit", work / "ok.yaml", "--out", work / "runs" / "r", "--quiet"], work)
    assert rc == 0, err[-2000:]
    import json

    report = json.loads((work / "runs" / "r" / "report.json").read_text())
    assert "\u00e4" in report["data"]["features"]
    assert listing(work / "runs") == ["r"]


@pytest.mark.parametrize("bad", [[1, 2, 3], "not-a-frame"])
def test_in_memory_data_of_the_wrong_shape(tmp_path, bad):
    import tfresp
    from tfresp.errors import DataError

    with pytest.raises(DataError) as exc:
        tfresp.fit({"data": {"label": "label"}}, data=bad, out=tmp_path / "r")
    assert "`data`" in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_in_memory_x_y_length_mismatch(tmp_path):
    import tfresp
    from tfresp.errors import DataError

    with pytest.raises(DataError, match="rows"):
        tfresp.fit({"data": {"label": "label"}}, data=(np.zeros((10, 2)), np.zeros(9)), out=tmp_path / "r")
    assert list(tmp_path.iterdir()) == []


def test_pandas_frame_with_duplicate_columns(tmp_path):
    import tfresp
    from tfresp.errors import DataError

    df = pd.DataFrame(np.zeros((6, 3)), columns=["x", "x", "label"])
    with pytest.raises(DataError, match="duplicate"):
        tfresp.fit({"data": {"label": "label"}}, data=df, out=tmp_path / "r")
    assert list(tmp_path.iterdir()) == []
