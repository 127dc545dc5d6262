"""The privacy concern end to end: Poisson sampling, ledger, budget stop, report section, refusals."""
import json
import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tfresp
from tests.conftest import tiny_adult
from tfresp.run.builder import RunContext
from tfresp.concerns import Contribution
from tfresp.config import load_config
from tfresp.data.dataset import prepare
from tfresp.errors import BudgetExhaustedError, ConfigError, IncompatibleModelError
from tfresp.models.base import ResponsibleModel
from tfresp.models.registry import build_core
from tfresp.privacy.accounting import PrivacyAccountant, compute_epsilon
from tfresp.privacy.concern import Privacy
from tfresp.privacy.ledger import PrivacyLedger
from tfresp.privacy.sampling import poisson_dataset


def test_poisson_sampling_is_bernoulli_per_example_and_redrawn_each_epoch():
    n, q, steps = 400, 0.05, 200
    x = np.arange(n, dtype=np.float32)[:, None]
    ds = poisson_dataset(x, np.zeros(n, np.int64), {}, q, steps, seed=3)
    assert ds.cardinality().numpy() == steps
    epoch1 = [b[0].numpy()[:, 0].astype(int) for b in ds]
    epoch2 = [b[0].numpy()[:, 0].astype(int) for b in ds]
    sizes = np.array([len(b) for b in epoch1])
    assert sizes.std() > 1.0  # variable batch sizes
    assert abs(sizes.mean() - q * n) < 4 * math.sqrt(q * (1 - q) * n / steps)
    counts = np.bincount(np.concatenate(epoch1), minlength=n)  # per-example inclusions ~ Binomial(steps, q)
    assert abs(counts.mean() - steps * q) < 0.5 and counts.var() == pytest.approx(steps * q * (1 - q), rel=0.25)
    assert all(len(set(b)) == len(b) for b in epoch1)  # without replacement within a step
    assert any(not np.array_equal(a, b) for a, b in zip(epoch1, epoch2))


def _ctx(cfg_dict):
    cfg = load_config(cfg_dict)
    data = prepare(cfg)
    ctx = RunContext(config=cfg, data=data, run_dir=None)
    ctx.core = build_core(cfg, data)
    ctx.model = ResponsibleModel(ctx.core)
    return ctx


def test_plan_refuses_batch_level_losses_and_calibrates():
    ctx = _ctx(tiny_adult(data={"max_rows": 600}, privacy={"target_epsilon": 2.0, "accountant": "rdp"}))
    ctx.contributions["fairness"] = Contribution(batch_losses=[lambda *a: tf.constant(0.0)])
    with pytest.raises(IncompatibleModelError, match="batch-level.*per-example clipping"):
        Privacy().plan(ctx)
    ctx.contributions.clear()
    contrib = Privacy().plan(ctx)
    st = ctx.own("privacy")
    n = len(ctx.data.train)
    assert st.delta * n <= 0.1 < st.delta * 100 * n and st.sampling_rate == 128 / n
    eps = compute_epsilon(st.noise_multiplier, 128 / n, st.planned_steps, st.delta, "rdp")
    assert 0.99 * 2.0 <= eps <= 2.0
    assert contrib.gradient_fn is not None and contrib.train_dataset is not None
    assert isinstance(contrib.callbacks[0], PrivacyLedger)


def test_config_both_sigma_and_budget_allowed_neither_refused():
    cfg = load_config(tiny_adult(privacy={"noise_multiplier": 1.0, "target_epsilon": 2.0}))
    assert cfg.privacy.noise_multiplier == 1.0 and cfg.privacy.target_epsilon == 2.0
    with pytest.raises(ConfigError):
        load_config(tiny_adult(privacy={"target_epsilon": None, "noise_multiplier": None}))


def test_dp_fit_report_and_ledger(tmp_path):
    res = tfresp.fit(tiny_adult(data={"max_rows": 1500}, privacy={"target_epsilon": 3.0},
                                train={"epochs": 2, "batch_size": 100}), out=tmp_path / "run", quiet=True)
    sec = res.report["privacy"]
    assert 0.99 * 3.0 <= sec["epsilon"] <= 3.0
    assert sec["steps"] == sec["planned_steps"] == 2 * math.ceil(len(res.context.data.train) / 100)
    assert sec["clipping"]["mode"] == "ghost" and sec["sampling"] == "poisson"
    assert len(res.history["dp/epsilon"]) == 2 and res.history["dp/epsilon"][-1] == pytest.approx(sec["epsilon"])
    assert [c["epoch"] for c in sec["epsilon_curve"]] == [1, 2]
    assert sec["epsilon_curve"][0]["epsilon"] < sec["epsilon_curve"][1]["epsilon"]
    assert "add or removing" not in sec["statement"] and "adding or removing one training row" in sec["statement"]
    assert 0.3 <= sec["audit"]["mia_auc"] <= 0.6
    for p in sec["plots"]:
        assert (res.run_dir / p).exists()
    assert "noise_seed" not in sec["ledger"]
    on_disk = json.loads((res.run_dir / "report.json").read_text())
    assert on_disk["privacy"]["epsilon"] == pytest.approx(sec["epsilon"])
    # `tfresp audit RUN --privacy` recomputes the MIA audit from the saved model and keeps the accounting
    from tfresp.commands.audit import audit_run

    again = audit_run(res.run_dir, ["privacy"])["privacy"]
    assert again["epsilon"] == pytest.approx(sec["epsilon"]) and again["audit"]["audited_by"].endswith("--privacy")
    assert again["audit"]["mia_auc"] == pytest.approx(sec["audit"]["mia_auc"], abs=1e-6)
    # the ledger state reproduces ε from scratch
    acc = PrivacyAccountant()
    acc.load_state_dict(sec["ledger"]["accountant"])
    assert sec["budget"]["accounting_delta"] == pytest.approx(sec["delta"] - sec["budget"]["extra_delta"])
    assert acc.get_epsilon(sec["budget"]["accounting_delta"]) == pytest.approx(sec["dp_sgd_epsilon"], abs=1e-9)
    # composed with the run's other spends (the DP preprocessing statistics) it gives the headline ε
    from tfresp.privacy.accounting import dp_event, make_dp_accountant
    from tfresp.privacy.budget import event_from_params

    oracle = make_dp_accountant("pld")
    for sigma, q, steps in sec["ledger"]["accountant"]["history"]:
        oracle.compose(dp_event(sigma, q, steps))
    for sp in sec["budget"]["spends"]:
        if sp["source"] != "privacy.dp_sgd":
            oracle.compose(event_from_params(sp["mechanism"], sp["params"]))
    assert oracle.get_epsilon(sec["budget"]["accounting_delta"]) == pytest.approx(sec["epsilon"], rel=1e-6)
    assert sec["epsilon"] <= 3.0  # the threshold δ came out of the run δ and σ was calibrated at the rest


def test_budget_stop_before_overshoot(tmp_path):
    # σ fixed and a budget that 3 epochs would overshoot: the ledger stops at the last affordable step.
    cfg = tiny_adult(data={"max_rows": 800}, train={"epochs": 3, "batch_size": 100},
                     privacy={"noise_multiplier": 1.2, "target_epsilon": 2.0, "accountant": "rdp", "audit": False},
                     export={"saved_model": False})
    res = tfresp.fit(cfg, out=tmp_path / "run", quiet=True)
    sec = res.report["privacy"]
    q, delta = sec["sampling_rate"], sec["delta"]
    assert sec["stopped_early"] and sec["steps"] < sec["planned_steps"]
    assert sec["epsilon"] <= 2.0
    assert compute_epsilon(1.2, q, sec["steps"] + 1, delta, "rdp") > 2.0  # stopped at the last affordable step
    assert compute_epsilon(1.2, q, sec["planned_steps"], delta, "rdp") > 2.0


def test_ledger_refuses_an_exhausted_budget_and_round_trips_state():
    acc = PrivacyAccountant("rdp")
    acc.step(noise_multiplier=1.0, sample_rate=0.1, num_steps=500)
    ledger = PrivacyLedger(acc, 1.0, 0.1, 1e-5, target_epsilon=0.5)
    ledger.set_params({"epochs": 1, "steps": 10})
    with pytest.raises(BudgetExhaustedError, match="exhausted"):
        ledger.on_train_begin()
    other = PrivacyLedger(PrivacyAccountant("pld"), 1.0, 0.1, 1e-5)
    other.set_state(ledger.get_state())
    assert other.accountant.steps == 500 and other.accountant.mechanism == "rdp"


def test_noise_seed_is_secret_but_restorable():
    ctx = _ctx(tiny_adult(data={"max_rows": 400}, privacy={"noise_multiplier": 1.0}))
    Privacy().plan(ctx)
    ledger = ctx.own("privacy").ledger
    seed = int(ledger.noise_seed.numpy())
    assert seed != ctx.config.seed and seed.bit_length() > 32  # drawn from `secrets`, not the public config
    assert ledger.get_state()["noise_seed"] == seed and "noise_seed" not in ledger.public_state()
    ctx2 = _ctx(tiny_adult(data={"max_rows": 400}, privacy={"noise_multiplier": 1.0}))
    Privacy().plan(ctx2)
    other = ctx2.own("privacy").ledger
    assert int(other.noise_seed.numpy()) != seed
    other.set_state(ledger.get_state())  # resume continues the same noise stream
    assert int(other.noise_seed.numpy()) == seed
