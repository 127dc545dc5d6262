"""A sampled client that sends no update: the round completes with those that answered (federated.min_available)
or the run stops resumably; under client-level DP-FedAvg a dropout changes neither q, nor the noise, nor ε."""
import numpy as np
import pytest

pytest.importorskip("flwr")

import dp_accounting  # noqa: E402
from dp_accounting import pld  # noqa: E402

import tfresp  # noqa: E402
from tfresp.run.checkpointing import work_dir  # noqa: E402
from tfresp.federated import dp as fdp  # noqa: E402
from tfresp.federated import train as ftrain  # noqa: E402
from tests.conftest import tiny_adult  # noqa: E402


_IN_PROCESS = ftrain.in_process


def _cfg(**fed):
    return tiny_adult(federated={"clients": 4, "partition": "iid", "rounds": 2, "clients_per_round": 4,
                                 "local_batch_size": 64, "local_learning_rate": 0.1, **fed},
                      export={"saved_model": False})


def _dropping(monkeypatch, drop):
    """Wrap the in-process transport: ``drop(rnd, jobs)`` names the clients whose update never arrives.
    Records what each round sent and received."""
    seen = {}
    real = _IN_PROCESS

    def in_process(ctx, parts):
        run = real(ctx, parts)

        def lossy(rnd, weights, jobs):
            out = run(rnd, weights, jobs)
            gone = set(drop(rnd, jobs))
            kept = {k: v for k, v in out.items() if k not in gone}
            seen[rnd] = {"start": [np.array(w) for w in weights], "jobs": [k for k, _ in jobs], "kept": kept}
            return kept

        return lossy

    monkeypatch.setattr(ftrain, "in_process", in_process)
    return seen


def test_round_completes_with_the_clients_that_answered(tmp_path, monkeypatch):
    seen = _dropping(monkeypatch, lambda rnd, jobs: [1] if rnd == 2 else [])
    ends = {}
    monkeypatch.setattr(ftrain, "on_round", lambda ev, rnd, w: ends.__setitem__(rnd, [np.array(a) for a in w])
                        if ev == "end" else None)
    res = tfresp.fit(_cfg(min_available=3), out=str(tmp_path / "r"), quiet=True)
    fed = res.report["federated"]
    assert fed["rounds"] == 2 and fed["participation"] == [4, 3] and fed["min_available"] == 3
    assert fed["dropped"] == [{"round": 2, "clients": [1]}]
    assert "dropped" not in res.history  # the curves stay numeric
    # oracle: FedAvg of round 2 = the row-weighted mean of the 3 updates that arrived (client 1 not in it)
    kept = seen[2]["kept"]
    assert sorted(kept) == [0, 2, 3]
    total = sum(n for _, n in kept.values())
    for i, got in enumerate(ends[2]):
        want = sum(w[i].astype(np.float64) * n for w, n in kept.values()) / total
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_too_few_answers_stop_resumably(tmp_path, monkeypatch):
    cfg = _cfg()  # default min_available: every sampled client must answer
    out = tmp_path / "run"
    _dropping(monkeypatch, lambda rnd, jobs: [2] if rnd == 2 else [])
    with pytest.raises(ftrain.ClientsUnavailableError, match=r"--resume") as err:
        tfresp.fit(cfg, out=str(out), quiet=True)
    assert "clients [2]" in str(err.value) and "federated.min_available" in str(err.value)
    assert not out.exists()
    assert (work_dir(out) / "checkpoints" / "latest").read_text().strip() == "step-00000001"
    _dropping(monkeypatch, lambda rnd, jobs: [])  # the client is back
    res = tfresp.fit(cfg, out=str(out), quiet=True, resume=True)
    fed = res.report["federated"]
    assert fed["rounds"] == 2 and fed["resumed_after_round"] == 1 and fed["dropped"] == []
    assert fed["participation"] == [4, 4]


def test_min_available_above_clients_is_refused():
    from tfresp.federated.config import FederatedConfig

    with pytest.raises(ValueError, match="min_available=5 exceeds clients=4"):
        FederatedConfig(clients=4, min_available=5)


def _pld_epsilon(z, q, rounds, delta):
    acc = pld.PLDAccountant(value_discretization_interval=1e-3)
    acc.compose(dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), rounds))
    return acc.get_epsilon(delta)


def test_dp_dropouts_leave_epsilon_and_mechanism_unchanged(tmp_path, monkeypatch):
    cfg = _cfg(clients=12, rounds=3, min_available=1, dp={"noise_multiplier": 1.2, "clip_norm": 0.5})
    # drop the first sampled client of every round that sampled at least two
    seen = _dropping(monkeypatch, lambda rnd, jobs: [jobs[0][0]] if len(jobs) >= 2 else [])
    draws, denominators = [], []
    real_sample, real_mean = fdp.SecretRandom.poisson_sample, fdp.noisy_mean

    def sample(self, n, q):
        draws.append(q)
        return real_sample(self, n, q)

    def mean(clipped, template, clip_norm, sigma, expected, rng):
        denominators.append((len(clipped), expected, sigma))
        return real_mean(clipped, template, clip_norm, sigma, expected, rng)

    monkeypatch.setattr(fdp.SecretRandom, "poisson_sample", sample)
    monkeypatch.setattr(fdp, "noisy_mean", mean)
    res = tfresp.fit(cfg, out=str(tmp_path / "r"), quiet=True)
    priv, fed = res.report["privacy"], res.report["federated"]
    q = 4 / 12
    # exactly one secret Poisson draw per round at rate q: no re-sampling to replace a dropped client
    assert draws == pytest.approx([q] * 3)
    # the noisy mean sums only the updates that arrived, with the same σ and the fixed denominator q·N
    for rnd, (n_sum, expected, sigma) in zip(sorted(seen), denominators):
        assert n_sum == len(seen[rnd]["kept"]) and expected == pytest.approx(q * 12) and sigma == 1.2
    assert any(len(seen[r]["jobs"]) >= 2 for r in seen)  # some round did lose a client
    # which clients were sampled (or dropped out) is secret under DP: neither ids nor per-round counts are published
    assert fed["dropped"] is None and fed["participation"] is None
    assert set(fed["withheld_under_dp"]) == {"participation", "dropped"}
    assert not any(f"'clients': [{seen[r]['jobs'][0]}]" in str(res.report) for r in seen)
    # ε: the same as without dropouts, i.e. dp-accounting's PoissonSampled(q, Gaussian(z)) composed 3 times
    assert priv["sampling_rate"] == pytest.approx(q) and priv["rounds"] == 3
    assert priv["epsilon"] == pytest.approx(_pld_epsilon(1.2, q, 3, priv["delta"]), abs=1e-6)
    assert "did not re-sample" in priv["statement"]
