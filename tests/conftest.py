"""Shared fixtures. Tests use small slices of real data and few steps (CI: 2 cores, no GPU)."""
import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("TFRESP_TEST_WORKER_THREADS"):
    # Opt-in: TFRESP_TEST_WORKER_THREADS=N caps TensorFlow's intra-op pool (and OpenMP) in each pytest-xdist worker
    # and in the CLI / notebook subprocesses its tests start. Off by default: on the shared 2-core machine it made
    # no measurable difference (benchmarks/results/test_suite_time.json, "xdist.threads_probe").
    for _var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_var, os.environ["TFRESP_TEST_WORKER_THREADS"])

import tfresp  # noqa: E402,F401  (environment switches before TF is imported)


def _parse_adult_once():
    """The embedded Adult data is parsed once per test session (~1-3 s a parse, paid by every Adult run):
    ``tfresp.data.sources.load_adult`` returns deep copies of the first parse, so no test sees another's edits.
    The first call runs the real parser; ``TFRESP_TEST_PARSE_ADULT_EACH_TIME=1`` turns the cache off."""
    import copy
    import functools

    from tfresp.data import sources

    if os.environ.get("TFRESP_TEST_PARSE_ADULT_EACH_TIME") == "1" or getattr(sources.load_adult, "_cached", False):
        return
    real, cache = sources.load_adult, []

    @functools.wraps(real)
    def load_adult():
        if not cache:
            cache.append(real())
        frames, info = cache[0]
        return {k: v.copy(deep=True) for k, v in frames.items()}, copy.deepcopy(info)

    load_adult._cached = True
    sources.load_adult = load_adult


_parse_adult_once()

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MINILM = SHARED / "models" / "minilm-l6-h384-uncased"
TWEETS = SHARED / "data" / "tweets" / "sentiment_tweets.csv.gz"


def tiny_adult(**over):
    """A quick Adult config dict: 3,000 training rows, 1 epoch."""
    cfg = {"name": "tiny", "seed": 0,
           # the classes are declared (public, from Adult's documentation): under DP, 3,000 rows are too few for
           # the DP class histogram to release the minority class
           "data": {"source": "adult", "label": "income", "sensitive": ["sex", "race"], "max_rows": 3000,
                    "categories": {"income": ["<=50K", ">50K"]}},
           "model": {"kind": "mlp", "hidden": [16]},
           "train": {"epochs": 1, "batch_size": 128}}
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def adult_domain(sensitive=("sex", "race"), label="income"):
    """Adult's public domain as declarations (``data.categories`` / ``data.numeric_ranges``): every value and
    range of the published dataset, as its documentation lists them. Under DP nothing is then fitted."""
    from tfresp.data.preprocess import column_kind
    from tfresp.data.sources import load_adult

    frames = load_adult()[0]
    full = pd.concat([frames["train"], frames["test"]], ignore_index=True)
    cats, ranges = {}, {}
    for col in full.columns:
        if col in sensitive or col == label:
            continue
        if column_kind(full[col]) == "numeric":
            ranges[col] = [float(full[col].min()), float(full[col].max())]
        else:
            cats[col] = sorted(full[col].astype(str).unique().tolist())
    return {"categories": {**cats, label: ["<=50K", ">50K"]}, "numeric_ranges": ranges}


@pytest.fixture
def adult_cfg():
    return tiny_adult


@pytest.fixture
def shared_dir():
    if not SHARED.exists():
        pytest.skip("../shared not present")
    return SHARED
