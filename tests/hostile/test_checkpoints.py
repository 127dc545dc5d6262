"""Hostile checkpoints: corrupted, incompatible, missing or tampered with. Each gives one clear error
(exit 2), and the checkpoint working directory is left byte-for-byte as it was."""
import json
import shutil

import pytest

from tests.hostile.conftest import base_config
from tests.hostile.harness import assert_clean_error, run_inprocess, tree_hash, write_yaml


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A real finished run with step checkpoints (3 kept: every 2 steps over one 6-step epoch)."""
    from tests.hostile.conftest import frame

    d = tmp_path_factory.mktemp("ck")
    frame().to_csv(d / "data.csv", index=False)
    cfg = write_yaml(d / "cfg.yaml", base_config(d / "data.csv", train={"checkpoint_every": 2}))
    rc, out, err = run_inprocess(["fit", cfg, "--out", d / "run", "--quiet"], d)
    assert rc == 0, err[-2000:]
    assert (d / "run" / "checkpoints" / "latest").exists()
    return d


@pytest.fixture
def killed(finished, tmp_path):
    """A work dir that looks like a killed run: ``.r.partial/checkpoints`` and no run dir."""
    shutil.copy(finished / "data.csv", tmp_path / "data.csv")
    write_yaml(tmp_path / "cfg.yaml", base_config(finished / "data.csv", train={"checkpoint_every": 2}))
    (tmp_path / "runs").mkdir()
    shutil.copytree(finished / "run" / "checkpoints", tmp_path / "runs" / ".r.partial" / "checkpoints")
    return tmp_path


def _resume(work, *extra, cfg="cfg.yaml"):
    h = tree_hash(work)
    rc, out, err = run_inprocess(["fit", work / cfg, "--out", work / "runs" / "r", "--quiet", "--resume", *extra],
                                 work)
    return rc, out, err, h


def _latest(work):
    root = work / "runs" / ".r.partial" / "checkpoints"
    return root / (root / "latest").read_text().strip()


def _expect(work, rc, out, err, h, *words):
    line = assert_clean_error(rc, out, err, words[0])
    for w in words[1:]:
        assert w in line, line
    assert tree_hash(work) == h, "the checkpoint (or something else) was modified"
    assert sorted(p.name for p in (work / "runs").iterdir()) == [".r.partial"]


def test_resume_with_nothing_to_resume(work):
    rc, out, err = run_inprocess(["fit", work / "cfg.yaml", "--out", work / "runs" / "r", "--resume", "--quiet"],
                                 work)
    assert_clean_error(rc, out, err, "Nothing to resume")
    assert list((work / "runs").iterdir()) == []


def test_corrupted_state_json(killed):
    (_latest(killed) / "state.json").write_text('{"format": 1, "global_st')
    _expect(killed, *_resume(killed), "state.json", "corrupted", "left untouched")


def test_state_json_with_wrong_types(killed):
    p = _latest(killed) / "state.json"
    state = json.loads(p.read_text())
    state["global_step"] = "12"
    p.write_text(json.dumps(state))
    _expect(killed, *_resume(killed), "global_step")


def test_truncated_variables_file(killed):
    data = next(_latest(killed).glob("ckpt.data-*"))
    data.write_bytes(data.read_bytes()[:20])
    _expect(killed, *_resume(killed), "checkpoint")


def test_missing_index_file(killed):
    (_latest(killed) / "ckpt.index").unlink()
    _expect(killed, *_resume(killed), "cannot be read")


def test_latest_pointer_with_path_traversal(killed):
    (killed / "runs" / ".r.partial" / "checkpoints" / "latest").write_text("../../../etc\n")
    _expect(killed, *_resume(killed), "latest", "step-NNNNNNNN")


def test_checkpoint_of_another_config(killed):
    cfg = base_config(killed / "data.csv", train={"checkpoint_every": 2}, model={"hidden": [8]})
    write_yaml(killed / "other.yaml", cfg)
    _expect(killed, *_resume(killed, cfg="other.yaml"), "model.hidden", "config changed")


def test_checkpoint_from_a_future_format(killed):
    p = _latest(killed) / "state.json"
    state = json.loads(p.read_text())
    state["format"] = 99
    p.write_text(json.dumps(state))
    _expect(killed, *_resume(killed), "format 99")


def test_fresh_run_over_an_unfinished_one_is_refused(killed):
    h = tree_hash(killed)
    rc, out, err = run_inprocess(["fit", killed / "cfg.yaml", "--out", killed / "runs" / "r", "--quiet"], killed)
    assert "--resume" in assert_clean_error(rc, out, err, "out")
    assert tree_hash(killed) == h


def test_symlinked_working_dir_is_refused(killed):
    wd = killed / "runs" / ".r.partial"
    wd.rename(killed / "elsewhere")
    wd.symlink_to(killed / "elsewhere", target_is_directory=True)
    h = tree_hash(killed)
    rc, out, err = run_inprocess(["fit", killed / "cfg.yaml", "--out", killed / "runs" / "r", "--resume",
                                  "--quiet"], killed)
    assert "symbolic link" in assert_clean_error(rc, out, err, "out")
    assert tree_hash(killed) == h


def test_a_valid_killed_run_does_resume(killed):
    """The positive control: the same fixture without tampering resumes and cleans up."""
    rc, out, err, _ = _resume(killed)
    assert rc == 0, err[-2000:]
    assert sorted(p.name for p in (killed / "runs").iterdir()) == ["r"]
    assert (killed / "runs" / "r" / "checkpoints" / "latest").exists()
