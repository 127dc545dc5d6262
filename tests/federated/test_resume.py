"""Per-round checkpoints of federated runs: interrupt after round k, --resume, same rounds/ε/weights."""
import json
import stat

import numpy as np
import pytest

pytest.importorskip("flwr")

import dp_accounting  # noqa: E402
from dp_accounting import pld  # noqa: E402

import tfresp  # noqa: E402
from tfresp.run.checkpointing import work_dir  # noqa: E402
from tfresp.federated import train as ftrain  # noqa: E402
from tests.conftest import tiny_adult  # noqa: E402


class Interrupted(Exception):
    pass


def _hook(monkeypatch, stop_after=None):
    """Record the weights each round starts from / ends with; raise after round ``stop_after``."""
    seen = {"start": {}, "end": {}}

    def on_round(event, rnd, weights):
        seen[event][rnd] = [np.array(w) for w in weights]
        if event == "end" and rnd == stop_after:
            raise Interrupted(f"after round {rnd}")

    monkeypatch.setattr(ftrain, "on_round", on_round)
    return seen


def _cfg(**fed):
    return tiny_adult(federated={"clients": 12, "partition": "iid", "rounds": 3, "clients_per_round": 4,
                                 "local_batch_size": 64, "local_learning_rate": 0.1, **fed},
                      export={"saved_model": False})


def _pld_epsilon(z, q, rounds, delta):
    acc = pld.PLDAccountant(value_discretization_interval=1e-3)
    acc.compose(dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), rounds))
    return acc.get_epsilon(delta)


def test_dp_fedavg_resumes_after_interrupted_round(tmp_path, monkeypatch):
    cfg = _cfg(dp={"target_epsilon": 8.0, "clip_norm": 0.5, "clip": "adaptive",
                   "count_noise_std": 2.0})
    out = tmp_path / "run"
    first = _hook(monkeypatch, stop_after=2)
    with pytest.raises(Interrupted):
        tfresp.fit(cfg, out=str(out), quiet=True)
    assert not out.exists()
    wd = work_dir(out)
    latest = (wd / "checkpoints" / "latest").read_text().strip()
    assert latest == "step-00000002"
    state_file = wd / "checkpoints" / latest / "state.json"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((wd / "checkpoints").stat().st_mode) == 0o700
    saved = json.loads(state_file.read_text())
    assert "secret_rng" in saved["callbacks"]["federated"]  # the secret stream continues on resume ...
    assert saved["history"]["round"] == [1, 2] and len(saved["history"]["epsilon"]) == 2

    # a changed config is refused before anything runs, and the checkpoint is left untouched
    changed = {**cfg, "federated": {**cfg["federated"], "clients_per_round": 5}}
    with pytest.raises(tfresp.TfrespError, match="federated.clients_per_round"):
        tfresp.fit(changed, out=str(out), quiet=True, resume=True)
    assert json.loads(state_file.read_text()) == saved

    second = _hook(monkeypatch)
    res = tfresp.fit(cfg, out=str(out), quiet=True, resume=True)
    # the resumed run started round 3 from the weights saved after round 2 and ran only round 3
    assert sorted(second["start"]) == [3]
    assert all(np.array_equal(a, b) for a, b in zip(second["start"][3], first["end"][2]))
    priv, fed = res.report["privacy"], res.report["federated"]
    assert priv["rounds"] == 3 and fed["rounds"] == 3 and fed["resumed_after_round"] == 2
    assert [p["round"] for p in priv["epsilon_curve"]] == [1, 2, 3]
    # ε over the whole history (not over the resumed part only), against dp-accounting on the recorded values
    oracle = _pld_epsilon(priv["effective_noise_multiplier"], priv["sampling_rate"], 3, priv["delta"])
    assert priv["epsilon"] == pytest.approx(oracle, abs=1e-6)
    assert priv["epsilon_curve"][1]["epsilon"] == pytest.approx(
        _pld_epsilon(priv["effective_noise_multiplier"], priv["sampling_rate"], 2, priv["delta"]), abs=1e-6)
    assert priv["epsilon"] <= 8.0
    # the adaptive clip bound continued from its saved value
    assert priv["epsilon_curve"] and len(res.history["clip_norm"]) == 3
    assert res.history["clip_norm"][1] == saved["history"]["clip_norm"][1]
    # the working directory is gone; the run dir keeps the checkpoints without the secret
    assert not wd.exists()
    for f in (out / "checkpoints").glob("step-*/state.json"):
        assert "secret_rng" not in json.loads(f.read_text())["callbacks"]["federated"]


def test_fedadam_resume_equals_uninterrupted_run(tmp_path, monkeypatch):
    cfg = _cfg(rounds=2, server_optimizer="fedadam", server_learning_rate=0.02)
    _hook(monkeypatch)
    whole = tfresp.fit(cfg, out=str(tmp_path / "whole"), quiet=True)
    _hook(monkeypatch, stop_after=1)
    with pytest.raises(Interrupted):
        tfresp.fit(cfg, out=str(tmp_path / "cut"), quiet=True)
    assert (work_dir(tmp_path / "cut") / "checkpoints" / "step-00000001" / "server.npz").exists()  # Adam moments
    _hook(monkeypatch)
    resumed = tfresp.fit(cfg, out=str(tmp_path / "cut"), quiet=True, resume=True)
    assert resumed.report["federated"]["participation"] == whole.report["federated"]["participation"]
    # without DP the run is deterministic: the resumed run ends with the uninterrupted run's weights
    for a, b in zip(resumed.model.get_weights(), whole.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert resumed.history["val_loss"] == pytest.approx(whole.history["val_loss"], abs=1e-6)
