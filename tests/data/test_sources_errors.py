"""tfresp/data/sources.py: every refusal of a file or an in-memory input is one message in the one style,
"`field`: what is wrong. Received: ... Remedy: ..."; a numpy structured array is a table with named columns."""
import re

import numpy as np
import pandas as pd
import pytest

from tfresp.data import sources
from tfresp.errors import DataError

STYLE = re.compile(r"^`[\w.\[\]]+`: .+\. Received: .+\. Remedy: .+", re.S)


def _files(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "head.csv").write_text("a,b\n")
    (tmp_path / "dup.csv").write_text("a,a\n1,2\n")
    (tmp_path / "x.txt").write_text("a,b\n1,2\n")
    return ["nope.csv", "d", "empty.csv", "head.csv", "dup.csv", "x.txt"]


def test_file_refusals_follow_the_style(tmp_path):
    for name in _files(tmp_path):
        with pytest.raises(DataError) as err:
            sources.load_file(str(tmp_path / name))
        assert STYLE.match(str(err.value)), str(err.value)


@pytest.mark.parametrize("data", [
    "rows.csv", pd.DataFrame({"a": []}), (np.zeros((4, 2)), np.zeros(3)), (pd.DataFrame({"a": [1, 2]}), [1]),
    (np.zeros((4, 2, 2)), np.zeros(4)), (np.zeros((4, 2)), np.zeros((4, 3))), (np.zeros((4, 2)), np.zeros((4, 2, 2))),
    (pd.DataFrame({"label": [1, 2]}), [1, 2]), pd.DataFrame([[1, 2]], columns=["a", "a"]),
])
def test_memory_refusals_follow_the_style(data):
    with pytest.raises(DataError) as err:
        sources.load_memory(data)
    assert STYLE.match(str(err.value)), str(err.value)


def test_a_structured_array_keeps_its_field_names():
    x = np.zeros(5, dtype=[("age", "f8"), ("city", "U8")])
    x["age"], x["city"] = np.arange(5), list("abcab")
    frames, _ = sources.load_memory((x, np.array(["n", "y", "n", "y", "n"])))
    df = frames["train"]
    assert list(df.columns) == ["age", "city", "label"]
    assert df["age"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0] and df["city"].tolist() == list("abcab")


def test_a_zip_archive_must_hold_one_data_file(tmp_path):
    import zipfile

    one = tmp_path / "one.csv.zip"
    with zipfile.ZipFile(one, "w") as z:
        z.writestr("data/", "")
        z.writestr("data/rows.csv", "a,b\n1,2\n")
        z.writestr("__MACOSX/data/._rows.csv", "\x00\x05junk")  # macOS Finder's resource forks are not data
    assert sources.load_file(str(one))[0]["train"].to_dict("list") == {"a": [1], "b": [2]}
    two = tmp_path / "two.csv.zip"
    with zipfile.ZipFile(two, "w") as z:
        z.writestr("old.csv", "a,b\n9,9\n")
        z.writestr("new.csv", "a,b\n1,2\n")
    with pytest.raises(DataError) as err:
        sources.load_file(str(two))
    assert STYLE.match(str(err.value)) and "old.csv" in str(err.value) and "new.csv" in str(err.value)


def test_a_damaged_compressed_file_is_refused_in_the_style(tmp_path):
    import gzip
    import lzma

    data = ("a,b\n" + "".join(f"{i},{i}\n" for i in range(2000))).encode()
    files = {"bad.csv.zip": b"not a zip", "bad.csv.xz": b"not xz", "cut.csv.gz": gzip.compress(data)[:200],
             "cut.csv.xz": lzma.compress(data)[:200], "bad.csv.gz": b"not gz"}
    for name, raw in files.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(DataError) as err:
            sources.load_file(str(tmp_path / name))
        assert STYLE.match(str(err.value)), (name, str(err.value))


def test_a_complex_column_is_refused_not_cut_to_its_real_part():
    from tfresp.data import checks

    frame = pd.DataFrame({"z": np.arange(4) + 1j, "x": np.arange(4.0)})
    problems = checks.Problems()
    checks.check_types(frame, ["z", "x"], problems)
    assert len(problems) == 1 and "'z' holds ['complex128']" in problems[0]
