"""Shared fixtures. Tests use small slices of real data and few steps (CI: 2 cores, no GPU)."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tfresp  # noqa: E402,F401  (environment switches before TF is imported)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MINILM = SHARED / "models" / "minilm-l6-h384-uncased"
TWEETS = SHARED / "data" / "tweets" / "sentiment_tweets.csv.gz"


def tiny_adult(**over):
    """A quick Adult config dict: 3,000 training rows, 1 epoch."""
    cfg = {"name": "tiny", "seed": 0,
           "data": {"source": "adult", "label": "income", "sensitive": ["sex", "race"], "max_rows": 3000},
           "model": {"kind": "mlp", "hidden": [16]},
           "train": {"epochs": 1, "batch_size": 128}}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


@pytest.fixture
def adult_cfg():
    return tiny_adult


@pytest.fixture
def shared_dir():
    if not SHARED.exists():
        pytest.skip("../shared not present")
    return SHARED
