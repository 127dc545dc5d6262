"""DP-SGD under replicas: noise once per global step with the single-device scale, same ε.

Measurement: with σ = 200 the DP noise dominates the clipped-gradient signal ~16x, so the spread of
``w_final - w_initial`` over all weights is (up to 6%) proportional to the noise std actually added per
global step. Single device is the oracle: a correct distributed run has ratio 1; noise added
independently on every replica at full scale gives sqrt(2); identical draws on R replicas at σC/sqrt(R)
(the seed-sharing trap under MultiWorkerMirroredStrategy) also gives sqrt(2).
Under DP the Adult subset encodes to ~10 inputs: with 32 hidden units (~420 weights) the ratio itself spread by
~5% between runs (0.925, 0.972, 0.998 measured), so the model is 512 wide (~6,600 weights, ~1.2%).
"""
import numpy as np
import pytest

from tests.distribute.helpers import run_local, run_workers, start_local

pytest.importorskip("tfresp.privacy.clipping", reason="tfresp.privacy (DP-SGD) not available")

CFG = {"name": "dpn", "seed": 0,
       "data": {"source": "adult", "label": "income", "sensitive": ["sex"], "max_rows": 2000,
                "categories": {"income": ["<=50K", ">50K"]}},
       "model": {"kind": "mlp", "hidden": [512]},  # ~6,000 weights: the std estimate is within ~1.2%
       "train": {"epochs": 1, "batch_size": 64, "optimizer": "sgd", "learning_rate": 0.01},
       "privacy": {"noise_multiplier": 200.0, "l2_norm_clip": 0.1, "sampling": "shuffle", "audit": False},
       "export": {"saved_model": False}, "report": {"html": False}}


def update_std(r) -> float:
    d = np.concatenate([(np.asarray(a) - np.asarray(b)).ravel() for a, b in zip(r["weights"], r["initial_weights"])])
    return float(d.std())


@pytest.fixture(scope="module")
def single_started(tmp_path_factory):  # the reference process, started; the first test waits for it
    return start_local({**CFG, "distribute": "none"}, tmp_path_factory.mktemp("dp1") / "run")


@pytest.fixture(scope="module")
def single(single_started):
    return single_started.result()


def _same_accounting(a, b):
    for key in ("epsilon", "steps", "noise_multiplier", "sampling_rate", "delta"):
        assert a["privacy"][key] == b["privacy"][key], key


def test_mirrored_two_replicas_noise_scale_and_epsilon(single_started, tmp_path):
    m = run_local({**CFG, "distribute": "mirrored"}, tmp_path / "run", logical_cpus=2)  # beside the reference
    single = single_started.result()
    assert m["training"]["replicas"] == 2 and m["training"]["global_batch_size"] == 64
    _same_accounting(m, single)
    ratio = update_std(m) / update_std(single)
    print(f"mirrored/single update std ratio = {ratio:.4f}, eps = {m['privacy']['epsilon']:.6g}")
    assert 0.94 < ratio < 1.06


@pytest.mark.slow  # two worker processes + the reference: ~90 s on 2 shared cores
def test_two_local_workers_noise_scale_and_epsilon(single, tmp_path):
    w0, w1 = run_workers({**CFG, "distribute": "multi_worker"}, tmp_path, workers=2)
    for w in (w0, w1):
        _same_accounting(w, single)
        ratio = update_std(w) / update_std(single)
        print(f"2-worker/single update std ratio = {ratio:.4f}")
        assert 0.94 < ratio < 1.06
