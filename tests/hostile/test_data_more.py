"""More hostile data (issue 14): every problem is reported at once, before training, with exit 2.

Each case runs ``tfresp fit`` in-process and asserts the harness contract: exit code 2, exactly one
``tfresp: error:`` line naming the field(s), no traceback, nothing left in ``runs/`` and the work
directory's file tree unchanged.
"""
import json
import os
import threading

import numpy as np
import pandas as pd
import pytest

from tests.hostile.conftest import base_config, frame
from tests.hostile.harness import assert_clean_error, listing, run_inprocess, tree_hash, write_yaml


def _fit(work, cfg, out="r"):
    write_yaml(work / "bad.yaml", cfg)
    h = tree_hash(work)
    rc, stdout, err = run_inprocess(["fit", work / "bad.yaml", "--out", work / "runs" / out, "--quiet"], work)
    return rc, stdout, err, h


def _refused(work, df, *fields, name="d.csv", **over):
    """Write ``df`` (CSV, Parquet or JSONL by ``name``), fit, assert the contract; return the error line."""
    path = work / name
    if df is not None:
        if name.endswith(".parquet"):
            df.to_parquet(path)
        elif name.endswith(".jsonl"):
            df.to_json(path, orient="records", lines=True)
        else:
            df.to_csv(path, index=False)
    rc, out, err, h = _fit(work, base_config(path, **over))
    line = assert_clean_error(rc, out, err, fields[0])
    for f in fields[1:]:
        assert f in line, f"{f!r} not named in: {line}"
    assert listing(work / "runs") == [], "a run/staging/partial dir was left behind"
    assert tree_hash(work) == h
    return line


# -- labels ---------------------------------------------------------------------------------------
def test_label_values_differing_in_case(work):
    df = frame().assign(y=lambda d: np.where(d.y == 1, "default", "paid"))
    df.loc[[0, 5, 9], "y"] = "Default"
    line = _refused(work, df, "data.label", "'Default' (3 rows)", "'default'")
    assert "case or spaces" in line


def test_label_values_differing_by_a_trailing_space(work):
    df = frame().assign(y=lambda d: np.where(d.y == 1, "yes", "no"))
    df.loc[[2, 3], "y"] = "yes "
    assert "'yes '" in _refused(work, df, "data.label")


def test_rare_class_is_refused_with_its_count(work):
    df = frame()
    df.loc[[1, 2], "y"] = 2
    assert "{'2': 2}" in _refused(work, df, "data.label", "min_class_rows")


def test_empty_test_split(work):
    df = frame(40)
    line = _refused(work, df, "data.split", data={"split": {"test": 0.01, "validation": 0.0}, "min_class_rows": 1})
    assert "test split is empty" in line


# -- column types -----------------------------------------------------------------------------------
def test_numeric_text_with_non_numbers_is_refused_by_name(work):
    df = frame()
    df["income"] = [f"${v:,.2f}" for v in np.linspace(500, 250000, len(df))]
    df.loc[[4, 8], "income"] = "unknown"
    line = _refused(work, df, "data.features", "'income'", "'unknown'")
    assert "looks numeric" in line


@pytest.mark.parametrize("kind,value", [("list", lambda i: [i, i + 1]), ("struct", lambda i: {"k": i}),
                                        ("bytes", lambda i: bytes([i % 256, 1]))])
def test_parquet_nested_and_binary_columns_are_refused_by_name(work, kind, value):
    df = frame()
    df["blob"] = [value(i) for i in range(len(df))]
    assert "'blob'" in _refused(work, df, "data.features", name="d.parquet")


def test_jsonl_list_column_is_refused_by_name(work):
    df = frame()
    df["tags"] = [["a", "b"]] * len(df)
    assert "'tags'" in _refused(work, df, "data.features", name="d.jsonl")


def test_text_column_of_empty_strings(work):
    df = frame().assign(note="")
    _refused(work, df, "data.text", data={"text": "note"})


# -- missing values ---------------------------------------------------------------------------------
def test_missing_numeric_values_name_every_column_with_counts(work):
    df = frame()
    df["c"], df["d"] = np.arange(len(df), dtype=float), np.ones(len(df))
    df.loc[[1, 2, 3], "a"] = np.nan
    df.loc[[4], "c"] = np.nan
    df.loc[[5, 6], "d"] = np.nan
    line = _refused(work, df, "data", "'a': 3", "'c': 1", "'d': 2")
    assert "data.missing: impute" in line


def test_impute_under_dp_needs_declared_values(work):
    df = frame()
    df.loc[[1, 2], "a"] = np.nan
    line = _refused(work, df, "data.impute_values", "'a'", data={"missing": "impute"},
                    privacy={"target_epsilon": 3.0})
    assert "DP" in line and "public" in line


def test_declared_impute_value_of_the_wrong_type(work):
    df = frame()
    df.loc[[1, 2], "a"] = np.nan
    _refused(work, df, "data.impute_values.a", data={"missing": "impute", "impute_values": {"a": "zero"}})


def test_nan_and_infinite_values_reported_together(work):
    df = frame()
    df["c"] = 1.0
    df.loc[3, "a"] = np.nan
    df.loc[4, "c"] = np.inf
    line = _refused(work, df, "data", "missing (NaN) numeric values", "infinite values", "'c': 1")
    assert line.count("|") >= 1


# -- names ------------------------------------------------------------------------------------------
def test_privileged_group_that_does_not_exist(work):
    line = _refused(work, frame(), "fairness.privileged.g", "'x'", fairness={"privileged": {"g": "x"}})
    assert "'f'" in line and "'m'" in line  # the groups present are listed


def test_privileged_attribute_that_is_not_sensitive(work):
    _refused(work, frame(), "fairness.privileged.b", fairness={"privileged": {"b": "red"}})


def test_fairness_sensitive_column_missing(work):
    _refused(work, frame(), "fairness.sensitive", "'gender'", fairness={"sensitive": ["gender"]})


def test_label_used_as_sensitive_attribute(work):
    _refused(work, frame(), "data.sensitive", "label", data={"sensitive": ["y"]})


def test_label_used_as_fairness_sensitive_attribute(work):
    _refused(work, frame(), "data.sensitive", "label", fairness={"sensitive": ["g", "y"]})


def test_every_problem_in_one_message(work):
    df = frame().assign(y=lambda d: np.where(d.y == 1, "yes", "no"))
    df.loc[[0, 1], "y"] = "Yes"
    df.loc[[2], "a"] = np.nan
    line = _refused(work, df, "data.label", "data.sensitive", "fairness.privileged.g", "missing (NaN) numeric",
                    data={"sensitive": ["g", "sex"]}, fairness={"privileged": {"g": "x"}})
    assert "problems with the data" in line


# -- non-regular files ------------------------------------------------------------------------------
def _fifo_case(work, **data):
    os.mkfifo(work / "pipe.csv")
    result = {}
    t = threading.Thread(target=lambda: result.update(line=_refused(work, None, *data.pop("fields"), **data)),
                         daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "tfresp hung on a named pipe"
    return result["line"]


def test_named_pipe_as_data_source_is_refused_without_hanging(work):
    line = _fifo_case(work, fields=["data.source", "named pipe"], name="pipe.csv")
    assert "regular file" in line


def test_named_pipe_as_test_file_is_refused_without_hanging(work):
    frame().to_csv(work / "d.csv", index=False)
    line = _fifo_case(work, fields=["data.split.test", "named pipe"],
                      data={"split": {"test": str(work / "pipe.csv"), "validation": 0.1}})
    assert "regular file" in line


def test_device_file_as_data_source(work):
    rc, out, err, h = _fit(work, base_config("/dev/zero"))
    assert "a device" in assert_clean_error(rc, out, err, "data.source")
    assert listing(work / "runs") == [] and tree_hash(work) == h


# -- repaired, not refused (the run succeeds and the report says what was done) --------------------
def _ok(work, df, out="ok", **over):
    df.to_csv(work / "ok.csv", index=False)
    write_yaml(work / "ok.yaml", base_config(work / "ok.csv", **over))
    rc, stdout, err = run_inprocess(["fit", work / "ok.yaml", "--out", work / "runs" / out, "--quiet"], work)
    assert rc == 0, err[-3000:]
    return json.loads((work / "runs" / out / "report.json").read_text())


def test_numbers_written_as_text_are_parsed_and_reported(work):
    df = frame()
    money = np.round(np.linspace(1000, 90000, len(df)), 2)
    df["income"] = [f"${v:,.2f}" for v in money]
    df["rate"] = [f"{v:.1f}%" for v in np.linspace(0, 50, len(df))]
    report = _ok(work, df)
    assert set(report["data"]["parsed_numeric"]) == {"income", "rate"}
    spec = json.loads((work / "runs" / "ok" / "preprocessing" / "tabular.json").read_text())
    kinds = {c["name"]: c for c in spec["columns"]}
    assert kinds["income"]["kind"] == "numeric" and kinds["rate"]["kind"] == "numeric"
    assert 1000 <= kinds["income"]["mean"] <= 90000  # parsed values, not one-hot categories


def test_missing_sensitive_values_become_an_explicit_group(work):
    df = frame()
    df.loc[:29, "g"] = np.nan
    report = _ok(work, df, fairness={"bootstrap": 0, "min_group_size": 1})
    groups = report["data"]["splits"]["train"]["group_sizes"]["g"]
    assert "<missing>" in groups and "nan" not in groups
    assert any("<missing>" in w and "'g'" in w for w in report["data"]["warnings"])
