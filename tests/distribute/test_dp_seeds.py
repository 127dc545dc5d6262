"""Multi-worker DP: every worker holds the same secret seeds (noise, Poisson draws / shuffle order, canaries),
so the workers shard one sample per step; and the seeds are secret (not the config seed, not the same as
another run with the same config).

Oracle: each worker reports the seeds it holds and a digest of the rows of the first batches its own input
pipeline produces (before Keras shards them); a single-device run with the same config is the independent run.
"""
import pytest

from tests.distribute.helpers import run_local, run_workers
from tfresp.privacy.budget import PrivacyBudget

pytest.importorskip("tfresp.privacy.clipping", reason="tfresp.privacy (DP-SGD) not available")

CFG = {"name": "dps", "seed": 0,
       "data": {"source": "adult", "label": "income", "sensitive": ["sex"], "max_rows": 1500,
                "categories": {"income": ["<=50K", ">50K"]}},
       "model": {"kind": "mlp", "hidden": [8]},
       "train": {"epochs": 1, "batch_size": 64, "optimizer": "sgd", "learning_rate": 0.01},
       "privacy": {"noise_multiplier": 1.0, "l2_norm_clip": 1.0, "sampling": "poisson", "canaries": 20,
                   "audit": False},
       "export": {"saved_model": False}, "report": {"html": False}}


def test_shared_root_gives_the_same_secret_sequence_on_every_worker():
    a, b, alone = PrivacyBudget(1.0, 1e-5), PrivacyBudget(1.0, 1e-5), PrivacyBudget(1.0, 1e-5)
    a.share_secret(123456789)
    b.share_secret(123456789)
    seq_a, seq_b = [a.secret_seed() for _ in range(4)], [b.secret_seed() for _ in range(4)]
    assert seq_a == seq_b and len(set(seq_a)) == 4 and all(0 <= s < 2 ** 62 for s in seq_a)
    c = PrivacyBudget(1.0, 1e-5)
    c.share_secret(123456790)  # another root: other seeds
    assert not set(seq_a) & {c.secret_seed() for _ in range(4)}
    assert alone.secret_seed() != alone.secret_seed()  # no shared root: fresh draws from `secrets`


def test_shared_secret_is_none_on_one_worker():
    import tensorflow as tf

    from tfresp.run.distribute import shared_secret

    assert shared_secret(tf.distribute.get_strategy()) is None


@pytest.mark.slow  # two worker processes + a single-device run: 118-147 s on 2 shared cores
def test_two_workers_hold_the_same_secret_seeds_and_batches(tmp_path):
    w0, w1 = run_workers({**CFG, "distribute": "multi_worker"}, tmp_path, workers=2)
    single = run_local({**CFG, "distribute": "none"}, tmp_path / "single")
    assert w0["secrets"] and set(w0["secrets"]) == {"noise_seed", "canary_seed"}
    assert w0["secrets"] == w1["secrets"]
    assert w0["batches"] == w1["batches"] and w0["train_x"] == w1["train_x"]
    assert w0["privacy"]["epsilon"] == w1["privacy"]["epsilon"]
    seeds = set(w0["secrets"].values())
    assert CFG["seed"] not in seeds and not seeds & set(single["secrets"].values())
    assert w0["batches"] != single["batches"]


@pytest.mark.slow  # two worker processes: ~75 s on 2 shared cores
def test_workers_with_their_own_seeds_are_refused_before_training(tmp_path):
    results = run_workers({**CFG, "distribute": "multi_worker"}, tmp_path, workers=2, raw=True,
                          TFRESP_TEST_UNSHARED_SEEDS="1")
    for rc, out, err in results:
        assert rc != 0 and "@@REPORT@@" not in out
        assert "hold different secret DP seeds" in err and "Remedy" in err


@pytest.mark.slow  # two worker processes, no training: ~47 s on 2 shared cores
def test_make_private_under_two_workers_shares_the_sampling_seed(tmp_path):
    from pathlib import Path

    runner = Path(__file__).resolve().parent / "_run_private.py"
    w0, w1 = run_workers({}, tmp_path, workers=2, runner=runner)
    assert w0 == w1 and w0["sampling_seed"] != 0x5EED  # the Poisson draws of both workers come from one secret
