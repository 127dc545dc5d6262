"""The secret DP noise seed never ends up in a finished (shareable) run directory."""
import json

import tfresp
from tests.conftest import tiny_adult


def test_finished_run_dir_has_no_noise_seed(tmp_path):
    res = tfresp.fit(tiny_adult(privacy={"target_epsilon": 3.0, "audit": False}), out=tmp_path / "run", quiet=True)
    ledger = res.context.own("privacy").ledger
    seed = int(ledger.noise_seed.numpy())
    states = list((res.run_dir / "checkpoints").glob("*/state.json"))
    assert states, "the final checkpoint should still be in the run dir"
    for path in res.run_dir.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            assert b"noise_seed" not in blob and str(seed).encode() not in blob, path
    saved = json.loads(states[-1].read_text())["callbacks"]
    ledger_state = next(s for s in saved.values() if "accountant" in s)
    assert ledger_state["accountant"] == ledger.get_state()["accountant"]  # the ε ledger itself is kept
    assert not list(tmp_path.glob(".run.partial*"))  # the private working dir is gone after success
