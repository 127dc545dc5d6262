"""Differentially private preprocessing statistics: thresholded histograms and clipped moments.

Under ``privacy:`` nothing fitted on the private training rows may leave the run outside the accounted
budget. Preprocessing needs three kinds of statistics, each released here with the Gaussian mechanism
and registered on the run's :class:`~tfresp.privacy.budget.PrivacyBudget`:

* **Vocabularies** (categorical values, text words): a *Gaussian sparse histogram* — every row adds 1 to
  at most ``m`` keys, Gaussian noise is added to each key's count and a key is kept only when its noisy
  count exceeds a threshold τ. A key held by a single row passes with probability ≤ ``m·Q((τ-1)/σ)``,
  which is the mechanism's extra δ (Korolova et al., WWW 2009, "Releasing search queries and clicks
  privately"; Wilson et al., PoPETs 2020, "Differentially private SQL with bounded user contribution";
  Wilkins et al., 2024, "Exact privacy analysis of the Gaussian sparse histogram mechanism"). A vocabulary
  publishes only the *set* of kept keys (sorted), so one rare row cannot change the model's input width
  except with probability δ; the noisy counts of kept keys are covered too (class weights use them).
* **Numeric ranges**: the same noisy histogram over a fixed, public grid of signed powers of two
  (bins ``[2^(k-1), 2^k)``); the range is the span of the bins whose noisy count passes τ. The grid is
  public, so these keys need no δ.
* **Means and standard deviations**: clipped to the DP range and rescaled to ``[-1, 1]``, the per-column
  sums of ``z`` and ``z²`` and the row count are released with one Gaussian mechanism
  (sensitivity ``sqrt(2k + 1)``), so neither the exact n nor any exact moment is published.

All noise comes from :meth:`PrivacyBudget.secret_seed` (never the public config seed).

Example:
    >>> mu = gaussian_noise_multiplier(epsilon=0.3, delta=1e-5)      # ≈ 14
    >>> tau = threshold(sigma=mu * 3.5, keys_per_row=12, delta=1e-6)  # noisy counts above tau are kept
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import dp_accounting
import numpy as np
from scipy.stats import norm

from tfresp.privacy import accounting

#: Largest power of two in the numeric grid: |x| >= 2**MAX_EXP falls in the outermost bin.
MAX_EXP = 64
#: rows per block of the streamed histogram and sums (the result does not depend on it but for float rounding)
BLOCK = 1 << 20


def gaussian_noise_multiplier(epsilon: float, delta: float) -> float:
    """The smallest Gaussian noise multiplier σ/Δ whose release is (ε, δ)-DP, calibrated with dp_accounting."""
    def make_event(mu):
        return dp_accounting.GaussianDpEvent(mu)

    def fresh():
        return accounting.make_dp_accountant("pld")

    # Bracket around the classical σ = sqrt(2 ln(1.25/δ))/ε (Dwork & Roth 2014, Thm A.1): the exact
    # multiplier is below it; a tiny lower end would make the PLD of the probe huge.
    classic = math.sqrt(2.0 * math.log(1.25 / float(delta))) / float(epsilon)
    try:
        mu = float(dp_accounting.calibrate_dp_mechanism(
            fresh, make_event, float(epsilon), float(delta),
            dp_accounting.ExplicitBracketInterval(0.1 * classic, 2.0 * classic), tol=1e-3 * classic))
    except (ValueError, OverflowError, FloatingPointError):  # brentq finds no bracket at absurd ε (e.g. 1e-9)
        from tfresp.errors import BudgetExhaustedError

        raise BudgetExhaustedError(
            f"`privacy.target_epsilon`: the preprocessing's share of the budget (ε={epsilon:.3g}, δ={delta:.3g}) is "
            f"too small to calibrate a Gaussian release (σ would be about {classic:.3g} times the sensitivity, "
            "pure noise). Received: an ε this small. Remedy: raise privacy.target_epsilon (typical values 1 to 10), "
            "or declare data.categories and data.numeric_ranges so the preprocessing spends nothing") from None
    # Brent's method returns a value within tol of the optimum: step up until the library confirms ε.
    while _epsilon(mu, delta) > epsilon:
        mu *= 1.001
    return mu


def _epsilon(mu: float, delta: float) -> float:
    acc = accounting.make_dp_accountant("pld")
    acc.compose(dp_accounting.GaussianDpEvent(mu))
    return float(acc.get_epsilon(delta))


def threshold(sigma: float, keys_per_row: int, delta: float) -> float:
    """τ such that a key held by one row passes ``1 + N(0, σ²) > τ`` in any of its ``keys_per_row`` keys
    with probability at most ``delta`` (union bound)."""
    return 1.0 + float(sigma) * float(norm.isf(float(delta) / max(int(keys_per_row), 1)))


def kept_keys(counts: Dict[str, int], sigma: float, tau: float, rng: np.random.Generator):
    """``(keys, noisy_counts)`` of the keys whose noisy count exceeds ``tau``, keys sorted. The noisy counts
    of kept keys are covered by the same mechanism; vocabularies publish only the keys."""
    keys = sorted(counts)
    noisy = np.asarray([counts[k] for k in keys], np.float64) + rng.normal(0.0, sigma, len(keys))
    kept = [(k, float(c)) for k, c in zip(keys, noisy) if c > tau]
    return [k for k, _ in kept], [c for _, c in kept]


def bin_index(x: np.ndarray) -> np.ndarray:
    """Index of each value in the public grid: 0..MAX_EXP for x >= 0 (``[0,1)``, ``[1,2)``, ``[2,4)`` ...),
    -1..-(MAX_EXP+1) for x < 0, mirrored."""
    a = np.abs(np.asarray(x, np.float64))
    k = np.where(a < 1.0, 0, np.minimum(MAX_EXP, np.floor(np.log2(np.maximum(a, 1.0))).astype(np.int64) + 1))
    return np.where(np.asarray(x) >= 0, k, -k - 1).astype(np.int64)


def bin_edges(index: int) -> Tuple[float, float]:
    """``[low, high]`` of grid bin ``index`` (see :func:`bin_index`)."""
    if index >= 0:
        return (0.0 if index == 0 else 2.0 ** (index - 1), 2.0 ** index)
    k = -index - 1
    return (-(2.0 ** k), 0.0 if k == 0 else -(2.0 ** (k - 1)))


def noisy_range(x: np.ndarray, sigma: float, tau: float, rng: np.random.Generator):
    """DP ``(lo, hi)`` of ``x``: the span of the public grid bins whose noisy count exceeds ``tau``;
    ``None`` when no bin passes. Every grid bin gets noise (empty ones too), so the output depends on the
    rows only through the noisy histogram."""
    grid = np.arange(-(MAX_EXP + 1), MAX_EXP + 1)
    counts = np.zeros(len(grid))
    for start in range(0, len(x), BLOCK):  # the histogram a block of rows at a time (bounded temporaries)
        counts += np.bincount(bin_index(np.asarray(x[start:start + BLOCK], np.float64)) + MAX_EXP + 1,
                              minlength=len(grid))
    passed = grid[counts + rng.normal(0.0, sigma, len(grid)) > tau]
    if len(passed) == 0:
        return None
    return bin_edges(int(passed.min()))[0], bin_edges(int(passed.max()))[1]


def noisy_moments(columns: Sequence[np.ndarray], ranges: Sequence[Tuple[float, float]], sigma: float,
                  rng: np.random.Generator) -> List[Tuple[float, float]]:
    """DP (mean, std) of each column clipped to its range, from one Gaussian release of the sums of
    ``z = (clip(x) - c)/h`` and ``z²`` (``c``, ``h``: the range's centre and half-width, so ``|z| <= 1``)
    and of the row count. Each row changes that vector by at most ``sqrt(2k + 1)`` in L2 (``sigma``
    must be the noise std for that sensitivity)."""
    n = max(len(columns[0]) + rng.normal(0.0, sigma), 1.0)
    out = []
    for x, (lo, hi) in zip(columns, ranges):
        c, h = (lo + hi) / 2.0, (hi - lo) / 2.0
        s1 = s2 = 0.0
        for start in range(0, len(x), BLOCK):  # the sums a block of rows at a time (bounded temporaries)
            z = (np.clip(np.asarray(x[start:start + BLOCK], np.float64), lo, hi) - c) / h
            s1 += float(z.sum())
            s2 += float((z * z).sum())
        m1 = float(np.clip((s1 + rng.normal(0.0, sigma)) / n, -1.0, 1.0))
        m2 = (s2 + rng.normal(0.0, sigma)) / n
        # Post-processing guard: noise can make the variance estimate (near) zero or negative on tiny data.
        var = max(m2 - m1 * m1, 1e-4)
        out.append((c + h * m1, h * math.sqrt(var)))
    return out
