"""Commands on finished runs (issue 14): ``report`` / ``compare`` / ``audit`` / ``export`` / ``explain`` never
write through symlinks or over a user's file, refuse data that changed since the run (sha256), work on
read-only run dirs where they only read, and turn hostile arguments into one clear error."""
import errno
import json
import shutil

import numpy as np
import pytest
import yaml

from tests.hostile.conftest import base_config, frame
from tests.hostile.harness import assert_clean_error, run_inprocess, tree_hash, write_yaml
from tests.report.conftest import synthetic_report


def _run_dir(path, report=None):
    path.mkdir(parents=True)
    (path / "report.json").write_text(json.dumps(report or synthetic_report()))
    return path


def _refused(work, args, field, *words):
    h = tree_hash(work)
    rc, out, err = run_inprocess(args, work)
    line = assert_clean_error(rc, out, err, field)
    for w in words:
        assert w in line, line
    assert tree_hash(work) == h, "a pre-existing file changed"
    return line


def _read_only(monkeypatch):
    """Simulate a read-only mount (root ignores permission bits): every atomic write fails with EROFS."""
    import tfresp.io

    def refuse(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tfresp.io, "atomic_write", refuse)
    monkeypatch.setattr(tfresp.io, "probe_writable", lambda d: False)


# -- report ----------------------------------------------------------------------------------------
def test_report_json_with_nan_is_a_clear_error(tmp_path):
    r = synthetic_report()
    r["evaluation"]["test"]["accuracy"] = float("nan")
    run = _run_dir(tmp_path / "run", r)  # json.dumps writes the non-JSON token NaN
    assert "NaN" in (run / "report.json").read_text()
    _refused(tmp_path, ["report", run], "run", "NaN")


def test_report_does_not_follow_a_symlinked_report_md(tmp_path):
    run = _run_dir(tmp_path / "run")
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    (run / "report.md").symlink_to(outside)
    _refused(tmp_path, ["report", run], "run", "symbolic link")
    assert outside.read_text() == "not yours"


def test_report_malformed_gate_writes_nothing(tmp_path):
    run = _run_dir(tmp_path / "run", synthetic_report(privacy=None))  # no DP claim for --check to verify
    _refused(tmp_path, ["report", run, "--check", "--gate", "accuracy >= 1.2.3"], "gates")


def test_report_check_works_on_a_read_only_run(tmp_path, monkeypatch):
    # --check is `tfresp verify`: it never writes; a report without its run's artifacts is refused, not checked
    run = _run_dir(tmp_path / "run", synthetic_report(privacy=None))
    _read_only(monkeypatch)
    h = tree_hash(tmp_path)
    rc, out, err = run_inprocess(["report", run, "--check", "--gate", "evaluation.test.accuracy >= 0.99"], tmp_path)
    assert rc == 2 and "not a finished tfresp run" in err and "Traceback" not in err, err
    assert tree_hash(tmp_path) == h


def test_report_rerender_on_a_read_only_run_is_a_clear_error(tmp_path, monkeypatch):
    run = _run_dir(tmp_path / "run")
    _read_only(monkeypatch)
    _refused(tmp_path, ["report", run], "run", "read-only", "--check")


# -- compare ---------------------------------------------------------------------------------------
@pytest.fixture
def two_runs(tmp_path):
    return _run_dir(tmp_path / "a"), _run_dir(tmp_path / "b", synthetic_report(evaluation__test__accuracy=0.7))


def test_compare_does_not_overwrite_a_users_compare_md(tmp_path, two_runs):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "compare.md").write_text("# my own comparison, by hand")
    _refused(tmp_path, ["compare", *two_runs, "--out", out], "--out", "not written by tfresp")


def test_compare_does_not_write_through_a_symlink(tmp_path, two_runs):
    out = tmp_path / "cmp"
    out.mkdir()
    (tmp_path / "elsewhere.html").write_text("keep")
    (out / "compare.html").symlink_to(tmp_path / "elsewhere.html")
    _refused(tmp_path, ["compare", *two_runs, "--out", out], "--out", "symbolic link")


def test_compare_out_is_a_file(tmp_path, two_runs):
    (tmp_path / "file").write_text("x")
    _refused(tmp_path, ["compare", *two_runs, "--out", tmp_path / "file"], "--out", "not a directory")


def test_compare_replaces_its_own_files(tmp_path, two_runs):
    out = tmp_path / "cmp"
    for _ in range(2):  # the second run replaces what the first wrote
        rc, _o, err = run_inprocess(["compare", *two_runs, "--out", out], tmp_path)
        assert rc == 0, err
    md = (out / "compare.md").read_text()
    assert "written by tfresp compare" in md and "| evaluation.test.accuracy |" in md
    assert sorted(p.name for p in out.iterdir()) == ["compare.html", "compare.md"]  # no temp files left


# -- commands that re-read a finished run's data ---------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A real finished CSV run with a SavedModel, and a DataFrame run (``memory``)."""
    import tfresp

    d = tmp_path_factory.mktemp("fin")
    frame().to_csv(d / "data.csv", index=False)
    cfg = write_yaml(d / "cfg.yaml", base_config(d / "data.csv", export={"saved_model": True}))
    rc, out, err = run_inprocess(["fit", cfg, "--out", d / "run", "--quiet"], d)
    assert rc == 0, err[-2000:]
    mem = base_config("memory", export={"saved_model": True})
    mem["data"].pop("source")
    tfresp.fit(mem, data=frame(), out=str(d / "mem"), quiet=True)
    return d


@pytest.fixture
def clone(finished, tmp_path):
    """A private copy of the finished run whose config points at a private copy of its data."""
    shutil.copy(finished / "data.csv", tmp_path / "data.csv")
    shutil.copytree(finished / "run", tmp_path / "run", symlinks=True)
    cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    cfg["data"]["source"] = str(tmp_path / "data.csv")
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


def _change_data(work):
    df = frame()
    df.loc[0, "a"] += 1.0  # one value: same rows, same splits, other numbers
    df.to_csv(work / "data.csv", index=False)


@pytest.mark.parametrize("args", [["audit", "run", "--fairness"], ["export", "run", "--tflite", "float"],
                                  ["explain", "run", "--row", "0", "--num-samples", "50"]],
                         ids=["audit", "export", "explain"])
def test_changed_data_file_is_refused(clone, args):
    _change_data(clone)
    _refused(clone, args, "data.source", "sha256")


def test_unchanged_data_is_accepted(clone):
    """The control for the case above: the same bytes pass the check and the audit runs."""
    rc, out, err = run_inprocess(["audit", "run", "--fairness"], clone)
    assert rc == 0, err[-2000:]
    assert "report updated" in out


def test_explain_empty_input(clone):
    _refused(clone, ["explain", "run", "--input", ""], "--input", "empty")


def test_explain_row_out_of_range(clone):
    _refused(clone, ["explain", "run", "--row", "100000"], "--row")


def test_audit_refuses_a_symlinked_report_json(clone):
    real = clone / "run" / "report.json"
    shutil.move(real, clone / "elsewhere.json")
    real.symlink_to(clone / "elsewhere.json")
    _refused(clone, ["audit", "run", "--fairness"], "RUN", "symbolic link")


def test_export_on_a_read_only_run_is_a_clear_error(clone, monkeypatch):
    _read_only(monkeypatch)
    _refused(clone, ["export", "run", "--tflite", "float"], "RUN", "read-only")


def test_audit_on_a_read_only_run_reports_without_writing(clone, monkeypatch):
    _read_only(monkeypatch)
    h = tree_hash(clone)
    rc, out, err = run_inprocess(["audit", "run", "--fairness"], clone)
    assert rc == 0 and "read-only" in err and "Traceback" not in err, err[-2000:]
    assert tree_hash(clone) == h


def test_dataframe_run_needs_its_frame_on_the_cli(finished, tmp_path):
    shutil.copytree(finished / "mem", tmp_path / "mem")
    for args in (["audit", "mem"], ["export", "mem", "--tflite", "float"]):
        line = _refused(tmp_path, args, "RUN", "in-memory", "tfresp.audit(RUN, data=df)")
    line = _refused(tmp_path, ["explain", "mem", "--row", "0"], "--row", "in-memory")
    assert "tfresp.explain)" not in line  # the old message named an API that does not exist


def test_dataframe_run_audit_from_python(finished, tmp_path):
    import tfresp
    from tfresp.errors import DataError

    shutil.copytree(finished / "mem", tmp_path / "mem")
    report = tfresp.audit(tmp_path / "mem", ["fairness"], data=frame())
    assert report["fairness"]  # the same frame passes the digest check and the audit ran
    other = frame()
    other.loc[3, "b"] = "green" if other.loc[3, "b"] != "green" else "red"
    h = tree_hash(tmp_path)
    with pytest.raises(DataError, match="differs"):
        tfresp.audit(tmp_path / "mem", ["fairness"], data=other)
    assert tree_hash(tmp_path) == h


def test_tfresp_load_serves_the_runs_model(finished):
    import tensorflow as tf

    import tfresp
    from tfresp.errors import CheckpointError

    model = tfresp.load(finished / "run")
    sig = model.signatures["serving_default"]
    df = frame().head(5)
    inputs = {"a": tf.constant(df["a"].to_numpy(np.float32)), "b": tf.constant(df["b"].to_numpy().astype(str)),
              "g": tf.constant(df["g"].to_numpy().astype(str))}
    spec = sig.structured_input_signature[1]
    probs = sig(**{k: tf.cast(v, spec[k].dtype) if spec[k].dtype != tf.string else v
                   for k, v in inputs.items() if k in spec})["probabilities"].numpy()
    assert probs.shape == (5, 2) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(CheckpointError, match="not a finished tfresp run"):
        tfresp.load(finished)
