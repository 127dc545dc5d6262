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


# The same run with DP-SGD: Poisson sampling, calibrated noise, the privacy ledger in the checkpoint.
DP_CFG = {**CFG, "name": "krdp", "train": {**CFG["train"], "epochs": 2},
          "privacy": {"target_epsilon": 3.0, "l2_norm_clip": 1.0, "sampling": "poisson", "audit": False}}


SECRET = 123456789  # the DP runs' secret seed, shared by the reference and the killed run (see _signal_at.py)


def _reference(d, cfg_dict):
    cfg = write_config(d / "c.yaml", cfg_dict)
    r = cli_signal("KILL", 0, "fit", cfg, "--out", d / "run", "--quiet", dp_secret=SECRET)
    assert r.returncode == 0, r.stderr[-2000:]
    return d / "run"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return _reference(tmp_path_factory.mktemp("ref"), CFG)


@pytest.fixture(scope="module")
def uninterrupted_dp(tmp_path_factory):
    pytest.importorskip("tfresp.privacy.concern", reason="tfresp.privacy (DP-SGD) not available")
    return _reference(tmp_path_factory.mktemp("refdp"), DP_CFG)


def _compare(resumed, ref):
    a, b = read_ckpt(final_step_dir(resumed) / "ckpt"), read_ckpt(final_step_dir(ref) / "ckpt")
    diff = max_abs_diff(a, b)
    ra, rb = (json.loads((p / "report.json").read_text()) for p in (resumed, ref))
    return diff, ra, rb


def test_dp_sigkill_mid_epoch_then_resume_matches_uninterrupted_weights_and_ledger(tmp_path, uninterrupted_dp):
    cfg = write_config(tmp_path / "c.yaml", DP_CFG)
    out = tmp_path / "run"
    killed = cli_signal("KILL", 30, "fit", cfg, "--out", out, "--quiet", dp_secret=SECRET)  # last ckpt: 20
    assert killed.returncode == -9
    partial = tmp_path / ".run.partial" / "checkpoints"
    state = json.loads((partial / (partial / "latest").read_text().strip() / "state.json").read_text())
    assert state["global_step"] == 20
    ledger = next(v for k, v in state["callbacks"].items() if k.endswith("PrivacyLedger"))
    assert ledger["accountant"]  # the privacy ledger is inside the checkpoint
    # The resumed run is the plain CLI with a fresh random secret: the noise/sampling seed must come back
    # from the checkpointed ledger state, or the weights diverge.
    resumed = cli("fit", cfg, "--out", out, "--quiet", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    diff, ra, rb = _compare(out, uninterrupted_dp)
    print(f"DP kill@30 resume@20: max |w diff| = {diff:.3g}; eps {ra['privacy']['epsilon']:.6g} vs "
          f"{rb['privacy']['epsilon']:.6g}; steps {ra['privacy']['steps']} vs {rb['privacy']['steps']}")
    assert diff <= 1e-6
    for key in ("epsilon", "steps", "noise_multiplier", "sampling_rate", "ledger", "epsilon_curve"):
        assert ra["privacy"][key] == rb["privacy"][key], key
    assert ra["training"]["history"] == rb["training"]["history"]
    assert ra["training"]["checkpointing"]["resumed_from_step"] == 20


@pytest.mark.slow  # the DP variant above covers the same path by default
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
