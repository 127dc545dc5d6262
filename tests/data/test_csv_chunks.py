"""tfresp/data/sources.py: a large CSV file read in chunks (text columns as categories) equals the whole-file read;
the data checks see category columns as the text they hold."""
import hashlib

import numpy as np
import pandas as pd
import pytest

from tfresp.data import checks, sources


def _write(path, text: str, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def _both(path, monkeypatch, **kw):
    monkeypatch.setattr(sources, "STREAM_BYTES", 1 << 40)
    whole, info_w = sources.load_file(str(path), **kw)
    monkeypatch.setattr(sources, "STREAM_BYTES", 0)
    monkeypatch.setattr(sources, "CHUNK_ROWS", 7)
    chunked, info_c = sources.load_file(str(path), **kw)
    return whole["train"], info_w, chunked["train"], info_c


def _same_values(a: pd.DataFrame, b: pd.DataFrame):
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    for c in a.columns:
        x, y = a[c], b[c]
        if isinstance(y.dtype, pd.CategoricalDtype):
            y = y.astype(object).where(y.notna(), np.nan)
        pd.testing.assert_series_equal(x.astype(object), y.astype(object), check_names=False)


def test_chunked_read_equals_the_whole_file(tmp_path, monkeypatch):
    rows = ["id,city,score,note,count"]
    for i in range(40):
        city = ["Paris", "Lyon", "", "Nice"][i % 4]
        note = "" if i < 10 else f"n{i % 3}"  # empty in the whole first chunk, then text
        count = "" if i == 33 else str(i)     # int until a later chunk holds a missing value
        rows.append(f"{i},{city},{i * 0.5},{note},{count}")
    path = _write(tmp_path / "d.csv", "\ufeff" + "\n".join(rows) + "\n")
    whole, info_w, chunked, info_c = _both(path, monkeypatch)
    assert isinstance(chunked["city"].dtype, pd.CategoricalDtype)
    assert isinstance(chunked["note"].dtype, pd.CategoricalDtype)
    assert list(chunked["city"].cat.categories) == sorted(chunked["city"].dropna().unique())
    assert chunked["count"].dtype == whole["count"].dtype == np.float64
    _same_values(whole, chunked)
    assert info_c == info_w
    assert info_c["files"]["d.csv"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_text_in_one_chunk_and_numbers_in_the_others_is_read_again_as_text(tmp_path, monkeypatch):
    # the whole-file reader (a whole 10M-row table as Python strings) is not needed: a second chunked pass
    mixed = _write(tmp_path / "m.csv", "a,b\n" + "\n".join(f"{i},{'x' if i == 20 else f'0{i}'}" for i in range(30)))
    whole, _, chunked, _ = _both(mixed, monkeypatch)
    monkeypatch.setattr(sources, "read_csv_bytes", None)  # the chunked reader must not give way
    chunked = sources.load_file(str(mixed))[0]["train"]
    assert isinstance(chunked["b"].dtype, pd.CategoricalDtype) and chunked["b"].iloc[3] == "03"
    _same_values(whole, chunked)


def test_chunked_read_gives_way_to_the_whole_file_reader(tmp_path, monkeypatch):
    # a `;` file with decimal commas
    semi = _write(tmp_path / "s.csv", "a;b\n" + "\n".join(f"{i};{i},5" for i in range(30)))
    whole, info_w, chunked, info_c = _both(semi, monkeypatch)
    pd.testing.assert_frame_equal(whole, chunked)
    assert info_c == info_w and info_c["decimal_comma"] == ["b"]
    # a file that is not UTF-8
    latin = _write(tmp_path / "l.csv", "a,b\n" + "\n".join(f"{i},caf\u00e9" for i in range(30)), "cp1252")
    whole, info_w, chunked, info_c = _both(latin, monkeypatch)
    pd.testing.assert_frame_equal(whole, chunked)
    assert info_c == info_w


def test_checks_treat_category_columns_as_text():
    s = pd.Series(["a", "", "<missing>", None, " b "], dtype=object)
    np.testing.assert_array_equal(checks.missing_mask(s.astype("category")), checks.missing_mask(s))
    assert checks.missing_mask(s).tolist() == [False, True, True, True, False]
    money = pd.DataFrame({"m": pd.Series(["$1,200", "$3", "$40,000"] * 5).astype("category")})
    problems = checks.Problems()
    assert "m" in checks.parse_numeric_text(money, ["m"], problems)
    assert money["m"].tolist()[:3] == [1200.0, 3.0, 40000.0]


@pytest.mark.parametrize("as_category", [False, True])
def test_high_cardinality_sees_category_columns(as_category):
    s = pd.Series([f"z{i}" for i in range(100)])
    frame = pd.DataFrame({"zip": s.astype("category") if as_category else s})
    assert len(checks.high_cardinality(frame, ["zip"], None)) == 1


def test_str_value_counts_of_category_columns_equal_the_string_counts():
    s = pd.Series(["b", "a", np.nan, "b", "c", "a", "b"], dtype=object)  # a CSV read: NaN
    cat = s.astype("category").cat.add_categories(["unseen"])  # an unobserved category is not counted
    assert checks.str_value_counts(cat) == checks.str_value_counts(s) == s.astype(str).value_counts().to_dict()
    assert "unseen" not in checks.str_value_counts(cat)


def test_streamed_dp_statistics_equal_the_whole_column(monkeypatch):
    from tfresp.data import dp_stats

    x = np.random.default_rng(1).normal(50, 30, 10_001)
    want_idx, want_cnt = np.unique(dp_stats.bin_index(x), return_counts=True)
    monkeypatch.setattr(dp_stats, "BLOCK", 1000)
    # zero noise + threshold 0: the range is the span of the occupied bins; the moments the clipped mean/std
    lo, hi = dp_stats.noisy_range(x, 1e-12, 0.5, np.random.default_rng(0))
    assert (lo, hi) == (dp_stats.bin_edges(int(want_idx.min()))[0], dp_stats.bin_edges(int(want_idx.max()))[1])
    (mean, std), = dp_stats.noisy_moments([x], [(0.0, 100.0)], 1e-12, np.random.default_rng(0))
    clipped = np.clip(x, 0.0, 100.0)
    assert mean == pytest.approx(clipped.mean(), rel=1e-9) and std == pytest.approx(clipped.std(), rel=1e-6)
    assert want_cnt.sum() == len(x)


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 250_000])
def test_a_row_with_more_fields_than_the_header_is_refused_by_both_readers(tmp_path, monkeypatch, chunk_rows):
    # pandas makes the first column an index when the first row has one field more than the header (every value
    # shifts one column left), and its chunked reader drops the extra field of a chunk's first row silently
    monkeypatch.setattr(sources, "CHUNK_ROWS", chunk_rows)
    for text in ["a,b\n1,2\n3,4\n5,6,7\n8,9\n", "a,b\n1,2,3\n4,5,6\n", "a,b\n1,2,3\n4,5\n", "a,b\n1,2\n3,4,5,6\n"]:
        path = _write(tmp_path / "r.csv", text)
        for stream_bytes in (0, 1 << 40):
            monkeypatch.setattr(sources, "STREAM_BYTES", stream_bytes)
            with pytest.raises(sources.DataError, match=r"^`data.source`: .*more fields than the header.*"
                                                        r"Received: .*Remedy: "):
                sources.load_file(str(path))


@pytest.mark.parametrize("first", ["", "   \n", "\n", "\r\n"])
def test_blank_lines_before_the_header_are_skipped_by_both_readers(tmp_path, monkeypatch, first):
    path = _write(tmp_path / "b.csv", first + "a,b\n1,x\n2,y\n\n3,z\n")
    whole, info_w, chunked, info_c = _both(path, monkeypatch)
    assert list(whole.columns) == ["a", "b"] and whole["a"].tolist() == [1, 2, 3]
    _same_values(whole, chunked)


def test_a_delimiter_at_the_end_of_the_data_rows_only_keeps_the_columns_in_place(tmp_path, monkeypatch):
    path = _write(tmp_path / "t.csv", "a,b\n1,x,\n2,y,\n3,z,\n")  # header without the trailing delimiter
    whole, info_w, chunked, info_c = _both(path, monkeypatch)
    assert whole["a"].tolist() == [1, 2, 3] and whole["b"].tolist() == ["x", "y", "z"]
    _same_values(whole, chunked)
    assert list(whole.index) == [0, 1, 2]


def test_numbers_then_text_in_one_chunk_read_like_the_whole_file(tmp_path, monkeypatch):
    # pandas types a large chunk in pieces (low_memory): ints then text made one column of int and str objects,
    # whose categories could not be sorted (TypeError from union_categoricals)
    n = 100_000  # 20 columns: pandas types 32,768 rows at a time
    z = [str(i % 5) if i < 50_000 else "xyz"[i % 3] for i in range(n)]
    rows = [",".join(f"c{j}" for j in range(19)) + ",z"] + [f"{'1,' * 19}{v}" for v in z]
    path = _write(tmp_path / "m.csv", "\n".join(rows) + "\n")
    monkeypatch.setattr(sources, "STREAM_BYTES", 0)
    monkeypatch.setattr(sources, "CHUNK_ROWS", 250_000)
    chunked, _ = sources.load_file(str(path))
    assert sources.as_category_strings(chunked["train"]["z"]).tolist() == z


def test_a_bool_column_missing_in_a_whole_chunk_stays_bool(tmp_path, monkeypatch):
    path = _write(tmp_path / "b.csv", "a,b\nTrue,1\nFalse,2\nTrue,3\n,4\nFalse,5\nTrue,6\n")
    whole, _, chunked, _ = _both(path, monkeypatch)
    monkeypatch.setattr(sources, "CHUNK_ROWS", 1)
    chunked, _ = sources.load_file(str(path))
    assert [repr(v) for v in chunked["train"]["a"]] == [repr(v) for v in whole["a"]]


def test_a_large_tsv_file_is_read_with_tabs_like_a_small_one(tmp_path, monkeypatch):
    # one comma and one tab a line: the sniffer would choose ','; a .tsv file is tab-separated
    rows = ["city,zip\tnote"] + [f"c{i % 3},{i}\tx" for i in range(30)]
    path = _write(tmp_path / "d.tsv", "\n".join(rows) + "\n")
    whole, info_w, chunked, info_c = _both(path, monkeypatch)
    assert list(whole.columns) == ["city,zip", "note"]
    _same_values(whole, chunked)
    assert info_c == info_w


@pytest.mark.parametrize("stream_bytes", [0, 1 << 40])
def test_a_value_reads_as_one_category_wherever_its_row_is(tmp_path, monkeypatch, stream_bytes):
    # pandas types a file in pieces of rows (32,768 here): "1" next to empty cells in an early piece read as the
    # float 1.0, in a later piece next to text as the string "1": two categories ("1.0", "1") for one value
    n = 40_000
    z = ["1" if i % 2 else "" for i in range(35_000)] + ["x" if i % 2 else "1" for i in range(n - 35_000)]
    rows = [",".join(f"c{j}" for j in range(19)) + ",z"] + [f"{'1,' * 19}{v}" for v in z]
    path = _write(tmp_path / "m.csv", "\n".join(rows) + "\n")
    monkeypatch.setattr(sources, "STREAM_BYTES", stream_bytes)
    got = sources.as_category_strings(sources.load_file(str(path))[0]["train"]["z"])
    oracle = pd.read_csv(path, dtype=str)["z"]  # every cell as its text
    assert got.tolist() == sources.as_category_strings(oracle).tolist()
    assert sorted(set(got)) == ["1", "<missing>", "x"]
