"""What a failed run leaves (issue 14): nothing before training (no staging dir, no lock, no ``.partial`` with
its secret seed); after training only the checkpoints ``--resume`` needs, with a note saying how to resume or
discard them. Also: ``--overwrite`` of a real run dir, and the quiet stderr filter."""
import json
import subprocess
import sys

from tests.hostile.conftest import base_config
from tests.hostile.harness import REPO, assert_clean_error, env, listing, run_inprocess, tree_hash, write_yaml


def test_failure_after_lock_before_training_leaves_nothing(work):
    write_yaml(work / "cfg.yaml", base_config(work / "data.csv", train={"batch_size": 10_000}))
    h = tree_hash(work)
    rc, out, err = run_inprocess(["fit", "cfg.yaml", "--out", "runs/r", "--quiet"], work)
    assert_clean_error(rc, out, err, "train.batch_size")
    assert listing(work / "runs") == [] and tree_hash(work) == h


def test_work_dir_without_checkpoint_is_removed_after_failure(tmp_path, capsys):
    """A working dir holding only secrets (no checkpoint) is not resumable: it must not outlive the run."""
    from tfresp.run import checkpointing

    target = tmp_path / "r"
    wd = checkpointing.work_dir(target)
    (wd / "checkpoints").mkdir(parents=True)
    (wd / "ledger_seed.json").write_text(json.dumps({"noise_seed": 1234}))
    checkpointing.after_failure(target, None, RuntimeError("boom"))
    assert not wd.exists() and capsys.readouterr().err == ""


def test_failure_after_training_keeps_checkpoints_and_resume_finishes(work, monkeypatch):
    from tfresp.export import saved_model as sm

    write_yaml(work / "cfg.yaml", base_config(work / "data.csv", train={"checkpoint_every": 2},
                                              export={"saved_model": True}))
    real = sm.export_saved_model

    def boom(ctx):
        raise RuntimeError("export failed on purpose")

    monkeypatch.setattr(sm, "export_saved_model", boom)
    rc, out, err = run_inprocess(["fit", "cfg.yaml", "--out", "runs/r", "--quiet"], work)
    assert rc == 3 and "export failed on purpose" in err
    assert listing(work / "runs") == [".r.partial"]  # no staging dir, no lock, no run dir
    note = [ln for ln in err.splitlines() if ln.startswith("tfresp: note:")]
    assert len(note) == 1 and "--resume" in note[0] and "--overwrite" in note[0] and ".r.partial" in note[0]
    monkeypatch.setattr(sm, "export_saved_model", real)
    rc, out, err = run_inprocess(["fit", "cfg.yaml", "--out", "runs/r", "--quiet", "--resume"], work)
    assert rc == 0, err[-2000:]
    assert listing(work / "runs") == ["r"] and (work / "runs" / "r" / "saved_model" / "saved_model.pb").is_file()


def test_overwrite_replaces_a_tfresp_run(work):
    old = work / "runs" / "r"
    old.mkdir()
    (old / ".tfresp-run").write_text(json.dumps({"run_id": "old"}))
    (old / "report.json").write_text("{}")
    (work / "keep.txt").write_text("mine")
    rc, out, err = run_inprocess(["fit", "cfg.yaml", "--out", "runs/r", "--quiet", "--overwrite"], work)
    assert rc == 0, err[-2000:]
    marker = json.loads((old / ".tfresp-run").read_text())
    assert marker["run_id"] != "old" and marker["written_by"] == "tfresp"
    assert json.loads((old / "report.json").read_text())["schema_version"]
    assert (work / "keep.txt").read_text() == "mine" and listing(work / "runs") == ["r"]


def test_existing_empty_out_dir_is_used_without_overwrite(work):
    (work / "runs" / "r").mkdir()  # e.g. made by a job script before calling tfresp
    rc, out, err = run_inprocess(["fit", "cfg.yaml", "--out", "runs/r", "--quiet"], work)
    assert rc == 0, err[-2000:]
    assert (work / "runs" / "r" / ".tfresp-run").is_file() and listing(work / "runs") == ["r"]


def test_native_stderr_noise_is_filtered_and_errors_kept():
    code = r"""
import os, sys
from tfresp import _quiet
restore = _quiet.filter_native_stderr()
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
os.write(2, b"I0000 00:00:1796099137.571059    8487 port.cc:153] oneDNN custom operations are on.\n")
os.write(2, b"E0000 00:00:1796099143.487727    8487 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n")
os.write(2, b"E0000 00:00:1796099148.087318    8487 node_def_util.cc:682] NodeDef mentions attribute x\n")
os.write(2, b"F0000 00:00:1796099148.087318    8487 a.cc:1] Check failed: real fatal error\n")
print("tfresp: error: a real error", file=sys.stderr)
restore()
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env(), cwd=REPO,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines() == ["F0000 00:00:1796099148.087318    8487 a.cc:1] Check failed: real fatal error",
                                     "tfresp: error: a real error"]


def test_verbose_is_accepted_by_every_command():
    from tfresp.cli import _parser

    for argv in (["fit", "c.yaml"], ["report", "r"], ["compare", "a", "b"], ["audit", "r"], ["explain", "r"],
                 ["export", "r"]):
        assert _parser().parse_args([*argv, "--verbose"]).verbose is True
