"""Client-level DP for FedAvg: per-client update clipping, secret Poisson client sampling, one Gaussian noise draw
per round on the sum, and the accounting (dp-accounting, through :mod:`tfresp.privacy.accounting`).

Why tfresp does this itself instead of Flower's ``DifferentialPrivacyServerSide*`` wrappers: those sample a fixed
number of clients per round (the Poisson-subsampled accounting used here would then only be an approximation) and
draw their noise from NumPy's global generator, which a run seeds from the public config seed (anyone could
regenerate and subtract the noise). Here the sampling and the noise come from a generator seeded by ``secrets``,
and the accountant sees exactly the mechanism that ran: per round, PoissonSampled(q, Gaussian(z)).
"""
from __future__ import annotations

import math
import secrets
from typing import List, Sequence, Tuple

import numpy as np

from tfresp.privacy import accounting


def resolve_delta(cfg, n_clients: int) -> float:
    """``auto``: the largest power of ten ≤ 1/(10·clients) (adjacency is one client)."""
    return float(cfg.delta) if cfg.delta != "auto" else accounting.default_delta(n_clients)


def effective_noise(update_noise: float, count_noise_std: float = None) -> float:
    """Noise multiplier of the combined release (update sum + clipped-count for adaptive clipping).

    Andrew et al. 2021, Thm. 1: releasing the update sum with multiplier σ_Δ and the count Σ(b_i − ½) with std σ_b is
    one Gaussian mechanism with multiplier (σ_Δ⁻² + (2σ_b)⁻²)^(-1/2).
    """
    if count_noise_std is None:
        return float(update_noise)
    return float((update_noise ** -2 + (2 * count_noise_std) ** -2) ** -0.5)


def update_noise_for(z_eff: float, count_noise_std: float) -> float:
    """σ_Δ such that :func:`effective_noise` (σ_Δ, σ_b) == ``z_eff`` (needs 2σ_b > z_eff)."""
    rest = z_eff ** -2 - (2 * count_noise_std) ** -2
    if rest <= 0:
        raise ValueError("count noise too small for this target: raise federated.dp.count_noise_std")
    return float(rest ** -0.5)


def epsilon(z_eff: float, q: float, rounds: int, delta: float, kind: str) -> float:
    return accounting.compute_epsilon(z_eff, q, rounds, delta, kind)


def calibrate(target_epsilon: float, q: float, rounds: int, delta: float, kind: str) -> float:
    """Effective noise multiplier whose ε over ``rounds`` is ≤ target (within 1%)."""
    return accounting.calibrate_noise(target_epsilon, delta, q, rounds, kind)


class SecretRandom:
    """The generator of client sampling and noise: seeded from ``secrets``, never from the config seed."""

    def __init__(self):
        self._rng = np.random.default_rng(secrets.randbits(128))

    def poisson_sample(self, n_clients: int, q: float) -> np.ndarray:
        return np.flatnonzero(self._rng.random(n_clients) < q)

    def normal(self, shape, std: float) -> np.ndarray:
        return self._rng.normal(0.0, std, size=shape)


def global_norm(arrays: Sequence[np.ndarray]) -> float:
    return float(math.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in arrays)))


def clip_update(delta: List[np.ndarray], clip_norm: float) -> Tuple[List[np.ndarray], float]:
    """``delta · min(1, C/‖delta‖)`` over all tensors together; returns (clipped, original norm)."""
    norm = global_norm(delta)
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return [d * scale for d in delta], norm


def noisy_mean(clipped: List[List[np.ndarray]], template: List[np.ndarray], clip_norm: float, noise_multiplier: float,
               expected_clients: float, rng: SecretRandom) -> List[np.ndarray]:
    """(Σ clipped updates + N(0, (σC)²)) / (q·N): the sum's sensitivity is C, noise is added once per round."""
    total = [np.zeros_like(t, dtype=np.float64) for t in template]
    for upd in clipped:
        for i, d in enumerate(upd):
            total[i] += d
    return [((s + rng.normal(s.shape, noise_multiplier * clip_norm)) / expected_clients).astype(t.dtype)
            for s, t in zip(total, template)]
