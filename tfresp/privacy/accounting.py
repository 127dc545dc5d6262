"""Privacy accounting for DP-SGD: a plain Python accountant and noise calibration.

The accountant is independent of Keras (Opacus-style): ``step(noise_multiplier=, sample_rate=)`` records
mechanism invocations, ``get_epsilon(delta)`` composes them with Google's ``dp_accounting`` library
(Rényi DP, Mironov 2017; or privacy loss distributions, Koskela et al. 2020 / Doroshenko et al. 2022), and
``state_dict`` / ``load_state_dict`` make it checkpointable.

Each DP-SGD step with Poisson sampling rate ``q`` and noise multiplier ``σ`` is the subsampled Gaussian
mechanism (Abadi et al. 2016, "Deep Learning with Differential Privacy"); the neighbouring relation is
add/remove one example.

Example:
    >>> acc = PrivacyAccountant("pld")
    >>> acc.step(noise_multiplier=1.1, sample_rate=256 / 60000, num_steps=2350)
    >>> eps = acc.get_epsilon(1e-5)
"""
from __future__ import annotations

import math
from typing import Dict, List

import dp_accounting
from dp_accounting import pld as dp_pld
from dp_accounting import rdp as dp_rdp

from tfresp.errors import BudgetExhaustedError, ConfigError

ACCOUNTANTS = ("pld", "rdp")
#: PLD value discretization. dp_accounting rounds pessimistically, so ε stays an upper bound at any interval;
#: 1e-3 is ~10x faster than the library default 1e-4 and differs from it by < 0.1% of ε in our checks.
PLD_DISCRETIZATION = 1e-3


def default_delta(n: int) -> float:
    """The largest power of ten <= ``1/(10·n)``, so δ·n <= 0.1 (``n=1000 -> 1e-4``, ``n=9999 -> 1e-5``).

    A δ near 1/n would allow a mechanism that publishes one whole row with probability ~1 (δ·n ≈ 1).
    """
    if n < 1:
        raise ConfigError([("privacy.delta", n, "delta 'auto' needs at least one training row")])
    return 10.0 ** -(len(str(10 * int(n) - 1)))


def dp_event(noise_multiplier: float, sample_rate: float, steps: int) -> "dp_accounting.DpEvent":
    """The ``dp_accounting`` event of ``steps`` DP-SGD steps (Poisson-subsampled Gaussian)."""
    step = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sample_rate < 1.0:
        step = dp_accounting.PoissonSampledDpEvent(sample_rate, step)
    return dp_accounting.SelfComposedDpEvent(step, int(steps))


def sgd_event(noise_multiplier: float, sample_rate: float, steps: int, sampling: str = "poisson",
              steps_per_epoch: int = 1) -> "dp_accounting.DpEvent":
    """The event of ``steps`` DP-SGD steps under ``sampling``.

    ``poisson``: each step is the Poisson-subsampled Gaussian mechanism (amplification by sampling).
    ``shuffle``: fixed-size batches from a (secret) permutation give no Poisson amplification we can
    prove here (Chua et al., ICML 2024), so we use the no-amplification bound: every example is in
    exactly one batch per epoch, so each started epoch is one Gaussian mechanism at q = 1.
    """
    if sampling == "shuffle":
        epochs = int(math.ceil(int(steps) / max(int(steps_per_epoch), 1)))
        return dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(noise_multiplier), epochs)
    return dp_event(noise_multiplier, sample_rate, steps)


def make_dp_accountant(kind: str):
    """A fresh ``dp_accounting`` accountant of ``kind`` (``pld`` or ``rdp``)."""
    if kind == "pld":
        return dp_pld.PLDAccountant(value_discretization_interval=PLD_DISCRETIZATION)
    if kind == "rdp":
        return dp_rdp.RdpAccountant()
    raise ConfigError([("privacy.accountant", kind, f"one of {list(ACCOUNTANTS)}")])


def compute_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                    accountant: str = "pld", *, sampling: str = "poisson", steps_per_epoch: int = 1,
                    base_events=()) -> float:
    """ε(δ) after ``steps`` DP-SGD steps composed with ``base_events`` (other releases of the same rows).

    ``steps == 0`` gives the base events' ε (0 without them); ``noise_multiplier == 0`` gives inf.
    """
    events = list(base_events)
    if steps > 0:
        if noise_multiplier <= 0:
            return math.inf
        events.append(sgd_event(noise_multiplier, sample_rate, steps, sampling, steps_per_epoch))
    if not events:
        return 0.0
    acc = make_dp_accountant(accountant)
    acc.compose(dp_accounting.ComposedDpEvent(events))
    eps = float(acc.get_epsilon(delta))
    return eps if math.isfinite(eps) else math.inf


def calibrate_noise(target_epsilon: float, delta: float, sample_rate: float, steps: int,
                    accountant: str = "pld", rtol: float = 0.01, max_iter: int = 80, *, sampling: str = "poisson",
                    steps_per_epoch: int = 1, base_events=()) -> float:
    """Smallest-ish noise multiplier σ whose ε(δ) is <= ``target_epsilon`` and within ``rtol`` of it.

    Binary search on σ (ε is decreasing in σ) until ``(1 - rtol)·target <= ε(σ) <= target``.

    Args:
        target_epsilon: the budget ε.
        delta: δ.
        sample_rate: Poisson sampling probability ``q`` per step.
        steps: number of DP-SGD steps.
        accountant: ``pld`` or ``rdp``.
        rtol: relative slack below the target that is accepted.
        sampling: ``poisson`` or ``shuffle`` (see :func:`sgd_event`).
        steps_per_epoch: steps per epoch (``shuffle`` accounting counts epochs).
        base_events: the run's other spends; σ is chosen so that their composition *with* the DP-SGD steps
            (PLD/RDP, not ε subtraction) stays <= ``target_epsilon``.

    Returns:
        σ (a float). Its ε is ``compute_epsilon(σ, ...)``.

    Raises:
        BudgetExhaustedError: if no σ in [1e-2, 1e4] meets the target (e.g. an absurdly small ε).
    """
    if target_epsilon <= 0:
        raise ConfigError([("privacy.target_epsilon", target_epsilon, "a positive number")])
    kw = dict(sampling=sampling, steps_per_epoch=steps_per_epoch, base_events=tuple(base_events))
    if base_events and compute_epsilon(1.0, sample_rate, 0, delta, accountant, **kw) >= target_epsilon:
        raise BudgetExhaustedError(
            f"Invalid value for argument `privacy.target_epsilon`. Received: target_epsilon={target_epsilon}. "
            "The run's other releases of the training data already spend all of it; nothing is left for DP-SGD. "
            "Remedy: raise the budget or lower the other spends' ε")
    eps = lambda s: compute_epsilon(s, sample_rate, steps, delta, accountant, **kw)  # noqa: E731
    low_enough = lambda e: (1 - rtol) * target_epsilon <= e <= target_epsilon  # noqa: E731
    # RDP's ε upper-bounds PLD's for the same σ, so the (fast) RDP answer is a tight starting bracket for PLD.
    guess = (calibrate_noise(target_epsilon, delta, sample_rate, steps, "rdp", rtol, **kw)
             if accountant == "pld" else 1.0)
    hi, factor = guess, 0.85 if accountant == "pld" else 0.5
    e_hi = eps(hi)
    while e_hi > target_epsilon:
        hi /= factor
        if hi > 1e4:
            raise BudgetExhaustedError(
                f"Invalid value for argument `privacy.target_epsilon`. Received: target_epsilon={target_epsilon}. "
                f"Even noise_multiplier=1e4 gives a larger ε with delta={delta}, q={sample_rate:.4g}, "
                f"steps={steps}; raise the budget, or reduce epochs / batch size")
        e_hi = eps(hi)
    if low_enough(e_hi):
        return hi
    lo = hi * factor
    while eps(lo) <= target_epsilon:
        hi, lo = lo, lo * factor
        if hi < 1e-2:
            return hi  # the target is so loose that σ≈0.01 already meets it; ε is below the target
        if low_enough(eps(hi)):
            return hi
    # invariant: eps(lo) > target >= eps(hi)
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi)
        e_mid = eps(mid)
        if e_mid > target_epsilon:
            lo = mid
        else:
            hi = mid
            if low_enough(e_mid):
                return hi
    return hi


def max_steps_within(target_epsilon: float, noise_multiplier: float, sample_rate: float, delta: float,
                     accountant: str = "pld", upper: int = 10_000_000, **kw) -> int:
    """The largest number of steps whose ε(δ) stays <= ``target_epsilon`` (0 if even one step exceeds it).

    ``kw``: ``sampling``, ``steps_per_epoch``, ``base_events`` as in :func:`compute_epsilon`.
    """
    eps = lambda k: compute_epsilon(noise_multiplier, sample_rate, k, delta, accountant, **kw)  # noqa: E731
    if eps(1) > target_epsilon:
        return 0
    lo, hi = 1, 2
    while hi <= upper and eps(hi) <= target_epsilon:
        lo, hi = hi, hi * 2
    if hi > upper:  # the doubling overshot the cap: upper itself may already be over the target
        if eps(upper) <= target_epsilon:
            return upper
        hi = upper
    while hi - lo > 1:  # eps(lo) <= target < eps(hi)
        mid = (lo + hi) // 2
        if eps(mid) <= target_epsilon:
            lo = mid
        else:
            hi = mid
    return lo


class PrivacyAccountant:
    """Records DP-SGD steps and reports ε(δ); a plain Python object (no Keras).

    Args:
        mechanism: ``pld`` (privacy loss distributions, tight) or ``rdp`` (Rényi DP, slightly looser).

    Example:
        >>> acc = PrivacyAccountant("rdp")
        >>> acc.step(noise_multiplier=1.0, sample_rate=0.01, num_steps=100)
        >>> acc.get_epsilon(1e-5) > 0
        True
    """

    def __init__(self, mechanism: str = "pld"):
        if mechanism not in ACCOUNTANTS:
            raise ConfigError([("privacy.accountant", mechanism, f"one of {list(ACCOUNTANTS)}")])
        self.mechanism = mechanism
        self.history: List[List[float]] = []  # [noise_multiplier, sample_rate, num_steps], run-length encoded

    def step(self, *, noise_multiplier: float, sample_rate: float, num_steps: int = 1) -> None:
        """Record ``num_steps`` steps of the subsampled Gaussian mechanism."""
        if num_steps <= 0:
            return
        if self.history and self.history[-1][0] == noise_multiplier and self.history[-1][1] == sample_rate:
            self.history[-1][2] += int(num_steps)
        else:
            self.history.append([float(noise_multiplier), float(sample_rate), int(num_steps)])

    @property
    def steps(self) -> int:
        return int(sum(h[2] for h in self.history))

    def get_epsilon(self, delta: float, extra_steps: int = 0) -> float:
        """ε(δ) of everything recorded (plus ``extra_steps`` more of the last mechanism, for look-ahead)."""
        history = [list(h) for h in self.history]
        if extra_steps and history:
            history[-1][2] += int(extra_steps)
        history = [h for h in history if h[2] > 0]
        if not history:
            return 0.0
        if any(h[0] <= 0 for h in history):
            return math.inf
        acc = make_dp_accountant(self.mechanism)
        for sigma, q, n in history:
            acc.compose(dp_event(sigma, q, int(n)))
        return float(acc.get_epsilon(delta))

    def state_dict(self) -> Dict:
        return {"mechanism": self.mechanism, "history": [list(h) for h in self.history]}

    def load_state_dict(self, state: Dict) -> None:
        self.mechanism = state["mechanism"]
        self.history = [[float(s), float(q), int(n)] for s, q, n in state["history"]]

    def __len__(self):
        return self.steps

    def __repr__(self):
        return f"PrivacyAccountant(mechanism={self.mechanism!r}, steps={self.steps})"
