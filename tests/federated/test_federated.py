"""Federated training: partitions, client-level DP (clipping, one noise draw per round, accounting), the run."""
import numpy as np
import pytest

pytest.importorskip("flwr")

import dp_accounting  # noqa: E402
from dp_accounting import pld  # noqa: E402

import tfresp  # noqa: E402
from tfresp.cli import main  # noqa: E402
from tfresp.federated import dp as fdp  # noqa: E402
from tfresp.federated.partition import partition  # noqa: E402
from tests.conftest import tiny_adult  # noqa: E402


def test_partitions_cover_every_row_once():
    import pandas as pd

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    frame = pd.DataFrame({"c": rng.choice(["a", "b", "c"], 1000, p=[0.6, 0.3, 0.1])})
    for spec in ("iid", "by_column:c", "dirichlet:0.3"):
        parts = partition(10, spec, y, frame, 0)
        allrows = np.concatenate(parts)
        assert len(parts) == 10 and all(len(p) > 0 for p in parts), spec
        assert sorted(allrows.tolist()) == list(range(1000)), spec
    for p in partition(10, "by_column:c", y, frame, 0):
        assert frame["c"].iloc[p].nunique() == 1  # non-IID: one value per client


def test_client_update_is_clipped_and_noise_added_once_per_round():
    upd = [np.full((3, 2), 2.0), np.full((2,), 2.0)]  # norm sqrt(8*4) = 5.657
    clipped, norm = fdp.clip_update(upd, 1.0)
    assert norm == pytest.approx(np.sqrt(32))
    assert fdp.global_norm(clipped) == pytest.approx(1.0)
    small, _ = fdp.clip_update([np.full((2,), 0.1)], 1.0)
    assert np.allclose(small[0], 0.1)  # under the bound: unchanged

    class Spy(fdp.SecretRandom):
        calls = []

        def normal(self, shape, std):
            self.calls.append((shape, std))
            return np.zeros(shape)

    spy = Spy()
    template = [np.zeros((3, 2), np.float32), np.zeros((2,), np.float32)]
    mean = fdp.noisy_mean([clipped, clipped, clipped], template, 1.0, 1.3, 6.0, spy)
    # one draw per tensor per round (not per client), std = sigma * C, fixed denominator q*N
    assert spy.calls == [((3, 2), 1.3), ((2,), 1.3)]
    assert np.allclose(mean[0], 3 * clipped[0] / 6.0)


def test_epsilon_matches_dp_accounting_oracle():
    for z, q, rounds, delta in [(1.1, 0.1, 50, 1e-5), (0.8, 0.33, 3, 1e-3), (2.0, 0.02, 400, 1e-6)]:
        acc = pld.PLDAccountant(value_discretization_interval=1e-3)
        acc.compose(dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), rounds))
        assert fdp.epsilon(z, q, rounds, delta, "pld") == pytest.approx(acc.get_epsilon(delta), abs=1e-6)
    # adaptive clipping: the combined release is one Gaussian with (sz^-2 + (2 sb)^-2)^(-1/2)
    z = fdp.effective_noise(1.0, 2.0)
    assert z == pytest.approx((1.0 + 1 / 16) ** -0.5)
    assert fdp.update_noise_for(z, 2.0) == pytest.approx(1.0)
    assert fdp.resolve_delta(type("C", (), {"delta": "auto"})(), 60) == pytest.approx(1e-3)


@pytest.fixture(scope="module")
def fed_cfg():
    return tiny_adult(federated={"clients": 24, "partition": "by_column:relationship", "rounds": 2,
                                 "clients_per_round": 8, "local_batch_size": 64, "local_learning_rate": 0.1},
                      fairness={"sensitive": ["sex"], "bootstrap": 0}, export={"saved_model": False})


def test_fedavg_run_reports_rounds_per_client_and_is_reproducible(fed_cfg, tmp_path):
    a = tfresp.fit(fed_cfg, out=str(tmp_path / "a"), quiet=True)
    b = tfresp.fit(fed_cfg, out=str(tmp_path / "b"), quiet=True)
    sec = a.report["federated"]
    assert sec["rounds"] == 2 and sec["participation"] == [8, 8] and len(sec["curve"]) == 2
    assert "Husband" in sec["per_client"]["accuracy"] and sec["per_client"]["spread"] >= 0
    assert "sex" in a.report["fairness"]
    assert all(np.array_equal(x, y) for x, y in zip(a.model.get_weights(), b.model.get_weights()))


def test_dp_fedavg_stays_within_budget_and_noise_is_secret(fed_cfg, tmp_path):
    cfg = {**fed_cfg, "federated": {**fed_cfg["federated"], "rounds": 3,
                                    "dp": {"target_epsilon": 8.0, "clip_norm": 0.5}}}
    a = tfresp.fit(cfg, out=str(tmp_path / "a"), quiet=True)
    b = tfresp.fit(cfg, out=str(tmp_path / "b"), quiet=True)
    priv = a.report["privacy"]
    assert priv["level"] == "client" and priv["epsilon"] <= 8.0 and priv["rounds"] == 3
    assert priv["epsilon"] == pytest.approx(fdp.epsilon(priv["effective_noise_multiplier"], priv["sampling_rate"],
                                                        3, priv["delta"], "pld"), abs=1e-9)
    assert "client" in priv["statement"] and "Not covered" in priv["statement"]
    # the same public seed does not reproduce the noise / the sampled clients
    assert not all(np.array_equal(x, y) for x, y in zip(a.model.get_weights(), b.model.get_weights()))
    # a given noise multiplier with a budget: training stops at the last affordable round
    cfg2 = {**cfg, "federated": {**cfg["federated"], "rounds": 50,
                                 "dp": {"noise_multiplier": 1.0, "target_epsilon": 4.0, "clip_norm": 0.5}}}
    c = tfresp.fit(cfg2, out=str(tmp_path / "c"), quiet=True)
    assert c.report["privacy"]["stopped_early"] and c.report["privacy"]["epsilon"] <= 4.0
    assert c.report["privacy"]["rounds"] < 50


def test_federated_with_dp_sgd_is_refused(fed_cfg, tmp_path, capsys):
    import yaml

    cfg = {**fed_cfg, "privacy": {"target_epsilon": 3}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["fit", str(path), "--out", str(tmp_path / "r")]) == 2
    assert "federated.dp" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
