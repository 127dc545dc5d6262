"""Fixtures of the hostile-input suite: a small valid CSV data set and a config that trains on it."""
import numpy as np
import pandas as pd
import pytest

from tests.hostile.harness import write_yaml


def frame(n=240, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = rng.choice(["red", "green", "blue"], size=n)
    g = rng.choice(["f", "m"], size=n)
    y = (a + (b == "red") + rng.normal(scale=0.5, size=n) > 0.5).astype(int)
    return pd.DataFrame({"a": a, "b": b, "g": g, "y": y})


def base_config(source, **over):
    cfg = {"name": "h", "seed": 0,
           "data": {"source": str(source), "label": "y", "sensitive": ["g"],
                    "split": {"test": 0.25, "validation": 0.1}},
           "model": {"kind": "mlp", "hidden": [4]},
           "train": {"epochs": 1, "batch_size": 32},
           "export": {"saved_model": False}, "report": {"html": False}}
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    return cfg


@pytest.fixture
def work(tmp_path):
    """A work dir with ``data.csv`` (valid) and ``cfg.yaml`` training on it; runs go to ``runs/``."""
    frame().to_csv(tmp_path / "data.csv", index=False)
    write_yaml(tmp_path / "cfg.yaml", base_config(tmp_path / "data.csv"))
    (tmp_path / "runs").mkdir()
    return tmp_path
