"""``PrivacyBudget``: the one owner of a run's privacy budget.

Every mechanism that reads private training rows registers its release here (DP-SGD, noisy counts for
reweighing, DP preprocessing statistics, ...). The budget composes all of them with ``dp_accounting``
(privacy loss distributions by default: a Laplace or Gaussian release is a ``DpEvent`` composed with the
DP-SGD steps, not added by basic composition), owns the secret-seed policy (seeds come from ``secrets``,
never from the public config seed, and are never written to a finished run directory), and keeps the
list of data-dependent artifacts with what covers each one: a DP mechanism, "public" (declared in the
config or taken from a public checkpoint) or "not covered" (named in the report's privacy statement).

Example:
    >>> budget = PrivacyBudget(target_epsilon=3.0, delta=1e-5)
    >>> budget.spend_laplace("fairness.reweigh_counts", epsilon=0.1, sensitivity=1.0,
    ...                      covers=["fairness.mitigation.noisy_group_label_counts"])
    >>> budget.declare_public("preprocessing.numeric_ranges", "declared in data.numeric_ranges")
    >>> budget.epsilon()          # everything registered so far, composed
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import secrets
from typing import Any, Dict, List, Optional

import dp_accounting

from tfresp.privacy import accounting


@dataclasses.dataclass
class Spend:
    """One registered release of (a function of) the private training rows."""

    source: str                 # e.g. "privacy.dp_sgd", "fairness.reweigh_counts", "preprocessing.means"
    event: Any                  # a dp_accounting.DpEvent
    mechanism: str              # "gaussian" | "laplace" | "subsampled_gaussian" | ...
    params: Dict[str, Any]      # the recorded mechanism parameters (enough to re-derive ε with dp_accounting)
    covers: List[str]           # the artifacts this release produced (report keys or file names)


@dataclasses.dataclass
class Coverage:
    """What protects one data-dependent artifact of the run."""

    item: str
    status: str                 # "dp" | "public" | "not_covered"
    detail: str


class PrivacyBudget:
    """Owns a DP run's budget: the spends, their composition, the secret seeds and the coverage list.

    Args:
        target_epsilon: the whole run's ε budget (``None``: no target, ε is only reported).
        delta: the whole run's δ.
        accountant: ``pld`` (default, tight) or ``rdp``.
    """

    def __init__(self, target_epsilon: Optional[float], delta: float, accountant: str = "pld"):
        self.target_epsilon = target_epsilon
        self.delta = float(delta)  # NaN until resolve_delta(n) when the config says ``delta: auto``
        self.accountant = accountant
        self.spends: List[Spend] = []
        self.coverage: List[Coverage] = []
        self._shared_root: Optional[int] = None  # multi-worker: one secret drawn once, the same on every worker
        self._drawn = 0

    def resolve_delta(self, n: int) -> float:
        """Set δ from the number of training rows when it is still unresolved (``delta: auto``); return δ.

        ``auto`` gives the largest power of ten <= 1/(10·n) (:func:`accounting.default_delta`). Idempotent:
        the first caller that knows n (data preparation or the privacy concern) fixes it for the whole run.
        """
        if math.isnan(self.delta):
            self.delta = accounting.default_delta(n)
        return self.delta

    # -- secrets ---------------------------------------------------------------------------
    def secret_seed(self) -> int:
        """A fresh seed for noise or sampling that no public value (config seed, run id) determines.

        After :meth:`share_secret` (multi-worker training) the k-th seed is a keyed hash of the shared root
        secret and k, so every worker, drawing in the same order, gets the same seeds: the same noise, the
        same Poisson draws and the same shuffle order (each worker then takes its shard of the same batches).
        """
        if self._shared_root is None:
            return secrets.randbits(62)
        self._drawn += 1
        digest = hashlib.blake2b(self._drawn.to_bytes(8, "big"), digest_size=8,
                                 key=self._shared_root.to_bytes(8, "big")).digest()
        return int.from_bytes(digest, "big") >> 2  # 62 bits, like secrets.randbits(62)

    def share_secret(self, root: int) -> None:
        """Derive every later :meth:`secret_seed` from ``root``, a secret all workers of the run share
        (:func:`tfresp.distribute.shared_secret`). Never a public value: whoever knows it knows every seed."""
        self._shared_root = int(root) % (2 ** 62)
        self._drawn = 0

    # -- registration ----------------------------------------------------------------------
    def spend(self, source: str, event, *, mechanism: str, params: Dict[str, Any], covers: List[str]) -> None:
        """Register a release of private data described by a ``dp_accounting`` event."""
        self.spends.append(Spend(source, event, mechanism, dict(params), list(covers)))
        for item in covers:
            self.coverage.append(Coverage(item, "dp", f"{source} ({mechanism}, {params})"))

    def spend_laplace(self, source: str, *, epsilon: float, sensitivity: float, covers: List[str]) -> float:
        """Register a Laplace release with pure ``epsilon`` at L1 ``sensitivity``; returns the noise scale b."""
        scale = float(sensitivity) / float(epsilon)
        self.spend(source, dp_accounting.LaplaceDpEvent(scale / float(sensitivity)), mechanism="laplace",
                   params={"epsilon": float(epsilon), "sensitivity": float(sensitivity), "scale": scale},
                   covers=covers)
        return scale

    def spend_gaussian(self, source: str, *, noise_multiplier: float, sensitivity: float,
                       covers: List[str]) -> float:
        """Register a Gaussian release (σ = noise_multiplier·sensitivity, L2); returns the noise std σ."""
        std = float(noise_multiplier) * float(sensitivity)
        self.spend(source, dp_accounting.GaussianDpEvent(float(noise_multiplier)), mechanism="gaussian",
                   params={"noise_multiplier": float(noise_multiplier), "sensitivity": float(sensitivity),
                           "std": std}, covers=covers)
        return std

    def withdraw(self, source: str) -> None:
        """Forget the spends (and coverage entries) of ``source``, e.g. before registering them again."""
        self.spends = [s for s in self.spends if s.source != source]
        self.coverage = [c for c in self.coverage if not (c.status == "dp" and c.detail.startswith(source + " ("))]

    def declare_public(self, item: str, detail: str) -> None:
        """An artifact that depends only on public/declared information (no privacy cost)."""
        self._declare(Coverage(item, "public", detail))

    def declare_not_covered(self, item: str, detail: str) -> None:
        """An artifact computed from private rows outside any DP mechanism: named in the statement."""
        self._declare(Coverage(item, "not_covered", detail))

    def declare_derived(self, item: str, detail: str) -> None:
        """An artifact computed only from releases already registered (post-processing of DP outputs, no cost)."""
        self._declare(Coverage(item, "dp", detail))

    def _declare(self, entry: Coverage) -> None:
        if entry not in self.coverage:
            self.coverage.append(entry)

    # -- composition -----------------------------------------------------------------------
    def composed_event(self, extra=None):
        """All registered events (plus ``extra``, e.g. planned DP-SGD steps) as one ``ComposedDpEvent``."""
        events = [s.event for s in self.spends] + ([extra] if extra is not None else [])
        return dp_accounting.ComposedDpEvent(events)

    @property
    def extra_delta(self) -> float:
        """δ spent outside the accountant's composition: mechanisms whose guarantee has its own δ term (e.g. the
        threshold of a DP histogram, ``params["delta"]``). The run's total δ is split: these first, the rest for
        the composed ε (so the whole run is (ε, δ)-DP by the composition theorem for approximate DP)."""
        return float(sum(float(s.params.get("delta", 0.0) or 0.0) for s in self.spends))

    @property
    def accounting_delta(self) -> float:
        """The δ at which the composed ε is computed: the run's δ minus :attr:`extra_delta`."""
        return self.delta - self.extra_delta

    def epsilon(self, extra=None, delta: Optional[float] = None) -> float:
        """ε of everything registered (plus ``extra``), composed with the run's accountant, at
        :attr:`accounting_delta` (or ``delta`` when given), so that (ε, run δ) holds for the whole run."""
        events = [s.event for s in self.spends] + ([extra] if extra is not None else [])
        if not events:
            return 0.0
        delta = self.accounting_delta if delta is None else delta
        if math.isnan(delta):
            raise ValueError("PrivacyBudget.epsilon: δ is unresolved; call resolve_delta(n) first")
        if delta <= 0:
            raise ValueError(f"PrivacyBudget.epsilon: the spends' own δ terms ({self.extra_delta:g}) use up the "
                             f"run's δ={self.delta:g}")
        if any(_is_noiseless(e) for e in events):
            return math.inf
        acc = accounting.make_dp_accountant(self.accountant)
        acc.compose(dp_accounting.ComposedDpEvent(events))
        eps = float(acc.get_epsilon(delta))
        return eps if math.isfinite(eps) else math.inf

    def section(self) -> Dict[str, Any]:
        """The report's view: spends (parameters, no secrets) and the coverage list."""
        return {
            "accountant": self.accountant,
            "delta": self.delta,
            "extra_delta": self.extra_delta,
            "accounting_delta": self.accounting_delta,
            "spends": [{"source": s.source, "mechanism": s.mechanism, "params": s.params, "covers": s.covers}
                       for s in self.spends],
            "coverage": [dataclasses.asdict(c) for c in self.coverage],
        }


def _is_noiseless(event) -> bool:
    """True for an event that contains a Gaussian/Laplace release without noise (ε = ∞)."""
    if isinstance(event, (dp_accounting.GaussianDpEvent, dp_accounting.LaplaceDpEvent)):
        return event.noise_multiplier <= 0
    if isinstance(event, dp_accounting.ComposedDpEvent):
        return any(_is_noiseless(e) for e in event.events)
    inner = getattr(event, "event", None)
    if isinstance(event, (dp_accounting.SelfComposedDpEvent, dp_accounting.PoissonSampledDpEvent)):
        return _is_noiseless(inner) and getattr(event, "count", 1) > 0
    return False


def event_from_params(mechanism: str, params: Dict[str, Any]):
    """Rebuild a spend's ``dp_accounting`` event from its recorded parameters (``tfresp report --check``)."""
    if mechanism == "laplace":
        return dp_accounting.LaplaceDpEvent(float(params["scale"]) / float(params["sensitivity"]))
    if mechanism == "gaussian":
        return dp_accounting.GaussianDpEvent(float(params["noise_multiplier"]))
    if mechanism == "dp_sgd":
        return accounting.sgd_event(float(params["noise_multiplier"]), float(params["sampling_rate"]),
                                    int(params["steps"]), params["sampling"], int(params["steps_per_epoch"]))
    raise ValueError(f"unknown mechanism {mechanism!r}")
