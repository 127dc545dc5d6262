"""Accounting and calibration against an independent dp_accounting computation."""
import math

import dp_accounting
import pytest
from dp_accounting import pld, rdp

from tfresp.errors import BudgetExhaustedError
from tfresp.privacy import accounting
from tfresp.privacy.accounting import PrivacyAccountant, calibrate_noise, compute_epsilon, default_delta


def oracle_epsilon(sigma, q, steps, delta, kind):
    """ε straight from dp_accounting, built here without tfresp's helpers."""
    acc = (pld.PLDAccountant(value_discretization_interval=accounting.PLD_DISCRETIZATION)
           if kind == "pld" else rdp.RdpAccountant())
    acc.compose(dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps))
    return acc.get_epsilon(delta)


# (n, expected batch, epochs, target ε, δ, accountant): 24 combinations, RDP mostly (fast), PLD on a few.
COMBOS = [
    (n, b, e, eps, delta, "rdp")
    for n, b, e in [(1000, 32, 1), (5000, 64, 3), (30000, 256, 5), (60000, 256, 10), (2000, 2000, 4)]
    for eps, delta in [(0.5, 1e-5), (3.0, 1e-5), (8.0, 1e-6)]
    if not (b == n and eps == 0.5)
] + [
    (1000, 32, 1, 1.0, 1e-4, "pld"), (5000, 100, 2, 0.7, 1e-4, "pld"),
    pytest.param(30000, 256, 2, 3.0, 1e-5, "pld", marks=pytest.mark.slow),
    pytest.param(60000, 512, 3, 8.0, 1e-5, "pld", marks=pytest.mark.slow),
    pytest.param(20000, 128, 1, 2.0, 1e-5, "pld", marks=pytest.mark.slow), (3000, 128, 2, 4.0, 1e-4, "rdp"),
    (10000, 10, 1, 1.0, 1e-5, "rdp"), (100, 10, 5, 10.0, 1e-3, "rdp"), (3000, 64, 1, 1.0, 1e-4, "rdp"),
    (45000, 1024, 20, 1.0, 1e-5, "rdp"),
]


def test_at_least_twenty_combinations():
    assert len([c for c in COMBOS if not hasattr(c, 'marks')]) >= 20


@pytest.mark.parametrize("n,batch,epochs,target,delta,kind", COMBOS)
def test_calibration_matches_dp_accounting(n, batch, epochs, target, delta, kind):
    q = batch / n
    steps = epochs * math.ceil(n / batch)
    sigma = calibrate_noise(target, delta, q, steps, kind)
    ours = compute_epsilon(sigma, q, steps, delta, kind)
    theirs = oracle_epsilon(sigma, q, steps, delta, kind) if q < 1 else None
    if theirs is not None:
        assert abs(ours - theirs) <= 1e-6
    assert ours <= target
    assert ours >= 0.99 * target
    # The accountant object gives the same ε when fed the steps one epoch at a time.
    acc = PrivacyAccountant(kind)
    for _ in range(epochs):
        acc.step(noise_multiplier=sigma, sample_rate=q, num_steps=math.ceil(n / batch))
    assert acc.steps == steps
    assert abs(acc.get_epsilon(delta) - ours) <= 1e-6


def test_more_noise_less_epsilon_and_pld_tighter_than_rdp():
    q, steps, delta = 0.01, 500, 1e-5
    e = [compute_epsilon(s, q, steps, delta, "rdp") for s in (0.8, 1.0, 1.5)]
    assert e[0] > e[1] > e[2]
    assert compute_epsilon(1.0, q, steps, delta, "pld") < compute_epsilon(1.0, q, steps, delta, "rdp")


def test_accountant_state_roundtrip_and_mixed_history():
    acc = PrivacyAccountant("rdp")
    acc.step(noise_multiplier=1.0, sample_rate=0.01, num_steps=100)
    acc.step(noise_multiplier=1.0, sample_rate=0.01, num_steps=50)
    acc.step(noise_multiplier=2.0, sample_rate=0.02, num_steps=10)
    assert acc.state_dict()["history"] == [[1.0, 0.01, 150], [2.0, 0.02, 10]]
    other = PrivacyAccountant("pld")
    other.load_state_dict(acc.state_dict())
    assert other.mechanism == "rdp" and other.steps == 160
    assert other.get_epsilon(1e-5) == acc.get_epsilon(1e-5)
    oracle = rdp.RdpAccountant()
    oracle.compose(dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(1.0)), 150))
    oracle.compose(dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(0.02, dp_accounting.GaussianDpEvent(2.0)), 10))
    assert abs(acc.get_epsilon(1e-5) - oracle.get_epsilon(1e-5)) < 1e-9
    assert acc.get_epsilon(1e-5, extra_steps=100) > acc.get_epsilon(1e-5)


def test_max_steps_within_budget_is_tight():
    steps = accounting.max_steps_within(2.0, 1.0, 0.02, 1e-5, "rdp")
    assert compute_epsilon(1.0, 0.02, steps, 1e-5, "rdp") <= 2.0 < compute_epsilon(1.0, 0.02, steps + 1, 1e-5, "rdp")
    assert accounting.max_steps_within(0.01, 0.5, 0.5, 1e-5, "rdp") == 0


def test_default_delta_is_at_most_one_over_ten_n():
    assert default_delta(3000) == 1e-5
    assert default_delta(1000) == 1e-4
    assert default_delta(9999) == 1e-5  # the old rule gave 1e-4 (δ·n = 0.9999)
    assert default_delta(32561) == 1e-6
    assert default_delta(1) == 0.1
    for n in (7, 99, 1001, 12345, 999_999):
        d = default_delta(n)
        assert d * n <= 0.1 and d * 100 * n > 0.1  # the largest power of ten with δ·n <= 0.1


def test_impossible_target_raises_budget_error():
    with pytest.raises(BudgetExhaustedError):
        calibrate_noise(1e-9, 1e-5, 1.0, 10_000, "rdp")


def test_max_steps_within_never_returns_a_cap_over_the_target():
    """With ``upper`` between two doublings, the cap is checked instead of returned unchecked."""
    from tfresp.privacy.accounting import compute_epsilon, max_steps_within

    full = max_steps_within(4.0, 1.0, 0.33, 1e-3, "pld")
    assert compute_epsilon(1.0, 0.33, full, 1e-3) <= 4.0 < compute_epsilon(1.0, 0.33, full + 1, 1e-3)
    for upper in (full - 1, full, full + 1, 2 * full - 1):
        k = max_steps_within(4.0, 1.0, 0.33, 1e-3, "pld", upper)
        assert k == min(upper, full) and compute_epsilon(1.0, 0.33, k, 1e-3) <= 4.0
