"""In-process checks of the checkpoint saver: cadence with steps_per_execution, the run-dir layout."""
import json

import numpy as np
import pandas as pd

import tfresp


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    return pd.DataFrame({"a": a, "b": rng.normal(size=n), "label": (a > 0).astype(int)})


def test_checkpoint_cadence_with_steps_per_execution_and_layout(tmp_path):
    # 270 train rows / batch 32 = 9 steps per epoch, 2 epochs = 18 steps; 2 steps per execution.
    cfg = {"name": "sv", "data": {"label": "label", "split": {"test": 0.1, "validation": 0.0}},
           "model": {"hidden": [4]}, "train": {"epochs": 2, "batch_size": 32, "checkpoint_every": 4,
                                               "steps_per_execution": 2},
           "export": {"saved_model": False}, "report": {"html": False}}
    saved = []
    from tfresp.run import checkpointing

    orig = checkpointing.CheckpointSaver.save

    def spy(self):
        saved.append(self.global_step)
        return orig(self)

    checkpointing.CheckpointSaver.save = spy
    try:
        result = tfresp.fit(cfg, data=_data(), out=tmp_path / "run", quiet=True)
    finally:
        checkpointing.CheckpointSaver.save = orig
    # Executions end at global steps 2,4,6,8,9 | 11,13,15,17,18: a checkpoint at the first execution end at
    # or past each multiple of 4, plus the final step.
    assert saved == [4, 8, 13, 17, 18]
    ck = tmp_path / "run" / "checkpoints"
    assert (ck / "latest").read_text().strip() == "step-00000018"
    assert sorted(p.name for p in ck.iterdir()) == ["latest", "step-00000017", "step-00000018"]  # KEEP = 2
    state = json.loads((ck / "step-00000017" / "state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"], state["steps_per_epoch"]) == (1, 8, 9)
    assert not (tmp_path / ".run.partial").exists()
    tr = result.report["training"]
    assert tr["steps_per_epoch"] == 9 and tr["checkpointing"]["every"] == 4
