"""Never lose a user's files (issue 14): ``--overwrite`` replaces only tfresp run dirs, runs lock their target,
hostile config files are bounded, and a failed run leaves nothing but what ``--resume`` needs.

Every refusal: exit 2, exactly one ``tfresp: error:`` line naming the field, no traceback, nothing left
behind and the file tree (hidden entries included) byte-for-byte unchanged.
"""
import os
import threading
import time

import pytest

from tests.hostile.conftest import base_config
from tests.hostile.harness import assert_clean_error, listing, run_inprocess, run_subprocess, tree_hash, write_yaml


def _refused(work, args, field, *words, cwd=None, runner=run_inprocess):
    h = tree_hash(work)
    rc, out, err = runner(args, cwd or work)
    line = assert_clean_error(rc, out, err, field)
    for w in words:
        assert w in line, line
    assert tree_hash(work) == h, "a pre-existing file changed"
    assert not [p for p in work.rglob("*") if ".staging-" in p.name or p.name.endswith((".lock", ".partial"))]
    return line


# -- --overwrite never deletes what tfresp did not write ------------------------------------------
def test_overwrite_dot_refused(work):
    (work / "notes.txt").write_text("mine")
    _refused(work, ["fit", "cfg.yaml", "--out", ".", "--overwrite", "--quiet"], "out", "current directory",
             runner=run_subprocess)


def test_overwrite_parent_of_cwd_refused(work):
    sub = work / "project" / "sub"
    sub.mkdir(parents=True)
    _refused(work, ["fit", work / "cfg.yaml", "--out", work / "project", "--overwrite", "--quiet"], "out",
             "current directory", cwd=sub)


def test_overwrite_data_directory_refused(work):
    data_dir = work / "data"
    data_dir.mkdir()
    (work / "data.csv").rename(data_dir / "data.csv")
    write_yaml(work / "cfg.yaml", base_config(data_dir / "data.csv"))
    _refused(work, ["fit", "cfg.yaml", "--out", "data", "--overwrite", "--quiet"], "out", "own input")


def test_overwrite_run_dir_holding_the_data_refused(work):
    """Even a tfresp run dir is not replaced when the run's own data file lives in it."""
    run = work / "runs" / "r"
    run.mkdir()
    (run / ".tfresp-run").write_text("{}")
    (work / "data.csv").rename(run / "data.csv")
    write_yaml(work / "cfg.yaml", base_config(run / "data.csv"))
    _refused(work, ["fit", "cfg.yaml", "--out", run, "--overwrite", "--quiet"], "out", "own input")


def test_overwrite_non_empty_user_directory_refused(work):
    mine = work / "results"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    _refused(work, ["fit", "cfg.yaml", "--out", mine, "--overwrite", "--quiet"], "out", ".tfresp-run")


def test_overwrite_home_like_directory_with_hidden_files_refused(work):
    home = work / "home"
    home.mkdir()
    (home / ".bashrc").write_text("export X=1")
    _refused(work, ["fit", "cfg.yaml", "--out", home, "--overwrite", "--quiet"], "out", "not a tfresp run")


def test_fake_marker_symlink_not_accepted(work):
    """A marker that is a symlink (planted to make a user dir look like a run) does not count."""
    mine = work / "results"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    (work / "marker").write_text("{}")
    (mine / ".tfresp-run").symlink_to(work / "marker")
    _refused(work, ["fit", "cfg.yaml", "--out", mine, "--overwrite", "--quiet"], "out", "not a tfresp run")


def test_out_name_too_long(work):
    _refused(work, ["fit", "cfg.yaml", "--out", "runs/" + "n" * 250, "--quiet"], "out", "too long")


def test_out_path_component_too_long(work):
    _refused(work, ["fit", "cfg.yaml", "--out", "runs/" + "d" * 300 + "/r", "--quiet"], "out", "too long",
             runner=run_subprocess)


def test_second_run_on_a_locked_target_names_the_first(work):
    from tfresp.run import rundir

    target = (work / "runs" / "r").absolute()
    with rundir.locked(target) as run_id:
        h = tree_hash(work / "runs")
        rc, out, err = run_inprocess(["fit", "cfg.yaml", "--out", target, "--quiet"], work)
        line = assert_clean_error(rc, out, err, "out")
        assert "another tfresp run" in line and run_id in line and str(os.getpid()) in line
        assert tree_hash(work / "runs") == h
    assert listing(work / "runs") == []  # the lock file goes with the lock


def test_lock_is_exclusive_across_threads_and_released(work):
    """An oracle for the lock itself: two holders never overlap; each waits for the other's release."""
    from tfresp.run import rundir
    from tfresp.errors import ConfigError

    target = work / "runs" / "x" / "r"
    held, refused = [], []

    def take():
        try:
            with rundir.locked(target):
                held.append(time.monotonic())
                time.sleep(1.0)
        except ConfigError:
            refused.append(1)

    threads = [threading.Thread(target=take) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(held) == 1 and len(refused) == 1
    with rundir.locked(target):  # released: can be taken again
        pass
    assert listing(work / "runs") == []  # the parent made for the lock is removed again


# -- config resource bounds ------------------------------------------------------------------------
def _bomb(levels=12):
    lines = ["a: &a [" + ",".join(["x"] * 10) + "]"]
    prev = "a"
    for i in range(levels):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*{prev}"] * 10) + "]")
        prev = f"l{i}"
    return "\n".join(lines) + "\n"


def test_billion_laughs_fails_fast_with_a_short_message(work):
    (work / "bomb.yaml").write_text(_bomb())
    t0 = time.monotonic()
    line = _refused(work, ["fit", "bomb.yaml", "--quiet"], "config", "aliases", runner=run_subprocess)
    assert time.monotonic() - t0 < 60 and len(line) < 600


def test_recursive_alias_refused(work):
    (work / "rec.yaml").write_text("train: &a {x: [*a]}\n")
    _refused(work, ["fit", "rec.yaml", "--quiet"], "config", "recursive")


def test_alias_bomb_in_set_value_refused(work):
    bomb = "[" + ",".join(["&a [1,1,1,1,1,1,1,1,1,1]"] + ["*a"] * 5) + "]"
    nested = bomb
    for _ in range(6):
        nested = "[" + ",".join([f"&n{_} {nested}"] + [f"*n{_}"] * 9) + "]"
    _refused(work, ["fit", "cfg.yaml", "--quiet", "--set", f"model.hidden={nested}"], "model.hidden")


def test_config_larger_than_limit_refused(work):
    (work / "big.yaml").write_text("name: h\n" + "# padding\n" * 120_000)
    _refused(work, ["fit", "big.yaml", "--quiet"], "config", "larger than")


def test_config_named_pipe_refused_without_hanging(work):
    os.mkfifo(work / "pipe.yaml")
    _refused(work, ["fit", "pipe.yaml", "--quiet"], "config", "not a regular file", runner=run_subprocess)


def test_config_dev_zero_refused(work):
    _refused(work, ["fit", "/dev/zero", "--quiet"], "config", "not a regular file")


def test_data_named_pipe_refused_without_hanging(work):
    os.mkfifo(work / "pipe.csv")
    write_yaml(work / "cfg.yaml", base_config(work / "pipe.csv"))
    _refused(work, ["fit", "cfg.yaml", "--out", "runs/r", "--quiet"], "data.source", "not a regular file")


def test_huge_value_gives_a_bounded_message(work):
    write_yaml(work / "cfg.yaml", {**base_config(work / "data.csv"), "name": "x/" * 50_000})
    line = _refused(work, ["fit", "cfg.yaml", "--quiet"], "name")
    assert len(line) < 1000


# -- gates are checked before training -------------------------------------------------------------
@pytest.mark.parametrize("gate", ["accuracy >= 1.2.3", "accuracy >= .", "f1 > 1e", "accuracy >= 0.8.", "acc uracy >= 1"])
def test_malformed_gate_fails_at_validation(work, gate):
    write_yaml(work / "cfg.yaml", {**base_config(work / "data.csv"), "gates": [gate]})
    _refused(work, ["fit", "cfg.yaml", "--out", "runs/r", "--quiet"], "gates")


def test_well_formed_gates_still_parse():
    from tfresp.report.gates import Gate

    assert [Gate.parse(g).threshold for g in ("accuracy >= 0.8", "f1 > .5", "privacy.epsilon <= 8",
                                              "x < 1e-3", "y == -2.")] == [0.8, 0.5, 8.0, 1e-3, -2.0]
