"""Kill a real CLI run mid-epoch (SIGKILL, SIGTERM), resume it, compare with an uninterrupted run."""
import json

import pytest

from tests.resilience.helpers import (cli, cli_signal, final_step_dir, max_abs_diff, read_ckpt,
                                      write_config)

# 3,000 Adult rows -> 2,700 train rows -> 22 steps/epoch at batch 128; 3 epochs = 66 steps.
CFG = {"name": "kr", "seed": 3,
       "data": {"source": "adult", "label": "income", "sensitive": ["sex"], "max_rows": 3000},
       "model": {"kind": "mlp", "hidden": [16, 8]},
       "train": {"epochs": 3, "batch_size": 128, "checkpoint_every": 10, "early_stopping": 2,
                 "optimizer": "adam", "warmup": 0.1},
       "export": {"saved_model": False}, "report": {"html": False}}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    cfg = write_config(d / "c.yaml", CFG)
    r = cli("fit", cfg, "--out", d / "run", "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    return d / "run"


def _compare(resumed, ref):
    a, b = read_ckpt(final_step_dir(resumed) / "ckpt"), read_ckpt(final_step_dir(ref) / "ckpt")
    diff = max_abs_diff(a, b)
    ra, rb = (json.loads((p / "report.json").read_text()) for p in (resumed, ref))
    return diff, ra, rb


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path, uninterrupted):
    cfg = write_config(tmp_path / "c.yaml", CFG)
    out = tmp_path / "run"
    # Step 37 is mid-epoch 1 (22 steps/epoch); the last checkpoint before the kill is step 30.
    killed = cli_signal("KILL", 37, "fit", cfg, "--out", out, "--quiet")
    assert killed.returncode == -9
    assert not out.exists()
    partial = tmp_path / ".run.partial" / "checkpoints"
    assert (partial / "latest").read_text().strip() == "step-00000030"
    state = json.loads((partial / "step-00000030" / "state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"], state["steps_per_epoch"]) == (1, 8, 22)
    resumed = cli("fit", cfg, "--out", out, "--quiet", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    diff, ra, rb = _compare(out, uninterrupted)
    print(f"kill@37 resume@30: max |w_resumed - w_uninterrupted| = {diff:.3g}")
    assert diff <= 1e-6
    assert ra["training"]["history"] == rb["training"]["history"]
    assert ra["evaluation"]["test"]["accuracy"] == rb["evaluation"]["test"]["accuracy"]
    # The working dir and the killed run's staging dir are gone; checkpoints moved into the run dir.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "run"]


@pytest.mark.slow  # two more CLI runs (~40 s on 2 shared cores)
def test_sigterm_saves_a_checkpoint_exits_143_and_resumes_exactly(tmp_path, uninterrupted):
    cfg = write_config(tmp_path / "c.yaml", CFG)
    out = tmp_path / "run"
    termed = cli_signal("TERM", 33, "fit", cfg, "--out", out, "--quiet")
    assert termed.returncode == 143, termed.stderr[-2000:]
    assert "--resume" in termed.stderr and "SIGTERM" in termed.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".run.staging-*"))  # a graceful stop discards its staging dir
    latest = (tmp_path / ".run.partial" / "checkpoints" / "latest").read_text().strip()
    assert latest == "step-00000033"  # saved at the step the signal arrived, not at a multiple of 10
    resumed = cli("fit", cfg, "--out", out, "--quiet", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    diff, ra, rb = _compare(out, uninterrupted)
    assert diff <= 1e-6
    assert ra["training"]["history"] == rb["training"]["history"]
