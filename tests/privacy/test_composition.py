"""Other concerns' spending on the training data composes with DP-SGD: the reported ε is the total."""
import dp_accounting
import pytest

import tfresp
from tests.conftest import tiny_adult
from tfresp.errors import BudgetExhaustedError


def test_reweigh_counts_spend_is_inside_the_target(tmp_path):
    cfg = tiny_adult(privacy={"target_epsilon": 2.0},
                     fairness={"sensitive": ["sex"], "mitigation": "reweigh", "bootstrap": 0},
                     gates=["privacy.epsilon <= 2"])
    res = tfresp.fit(cfg, out=tmp_path / "run", quiet=True)
    p = res.report["privacy"]
    spends = {s["source"]: s for s in p["budget"]["spends"]}
    assert set(spends) == {"fairness.reweigh_counts", "privacy.dp_sgd"}
    assert spends["fairness.reweigh_counts"]["params"]["epsilon"] > 0  # the noisy counts are a spend
    # the headline is the PLD composition (an independent dp_accounting oracle), not ε_sgd + ε_laplace
    acc = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-3)
    acc.compose(dp_accounting.LaplaceDpEvent(1.0 / spends["fairness.reweigh_counts"]["params"]["epsilon"]))
    sgd = spends["privacy.dp_sgd"]["params"]
    acc.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
        sgd["sampling_rate"], dp_accounting.GaussianDpEvent(sgd["noise_multiplier"])), sgd["steps"]))
    assert p["epsilon"] == pytest.approx(acc.get_epsilon(p["delta"]), rel=1e-6)
    assert 0.97 * 2.0 <= p["epsilon"] <= 2.0  # σ calibrated against the composition, not ε subtraction
    assert p["dp_sgd_epsilon"] + spends["fairness.reweigh_counts"]["params"]["epsilon"] > p["epsilon"]
    assert "fairness.reweigh_counts (laplace" in p["statement"]
    assert res.history["dp/epsilon"][-1] == pytest.approx(p["epsilon"], rel=1e-6)  # ledger uses the total too
    gate = res.report["gates"]["results"][0]
    assert gate["value"] == pytest.approx(p["epsilon"]) and gate["passed"]


def test_budget_used_up_by_other_concerns_is_refused(tmp_path):
    cfg = tiny_adult(privacy={"target_epsilon": 0.1},
                     fairness={"sensitive": ["sex"], "mitigation": "reweigh", "bootstrap": 0})
    with pytest.raises(BudgetExhaustedError, match="nothing is left for DP-SGD"):
        tfresp.fit(cfg, out=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()
