"""Other concerns' spending on the training data composes with DP-SGD: the reported ε is the total."""
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
    extra = sum(part["epsilon"] for part in p["composition"]["parts"][1:])
    assert extra > 0  # fairness.reweigh released noisy counts
    assert p["epsilon"] == pytest.approx(p["dp_sgd_epsilon"] + extra)
    assert p["epsilon"] <= 2.0 + 1e-9 and p["dp_sgd_epsilon"] <= 2.0 - extra + 1e-9
    assert "basic composition" in p["statement"]
    gate = res.report["gates"]["results"][0]
    assert gate["value"] == pytest.approx(p["epsilon"]) and gate["passed"]


def test_budget_used_up_by_other_concerns_is_refused(tmp_path):
    cfg = tiny_adult(privacy={"target_epsilon": 0.1},
                     fairness={"sensitive": ["sex"], "mitigation": "reweigh", "bootstrap": 0})
    with pytest.raises(BudgetExhaustedError, match="nothing is left for DP-SGD"):
        tfresp.fit(cfg, out=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()
