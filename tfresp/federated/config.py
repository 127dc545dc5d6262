"""Config of federated training (``federated:``)."""
from typing import Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from tfresp._configbase import Section
from tfresp.privacy.config import NoiseBudget


class FederatedDPConfig(NoiseBudget):
    """Client-level DP-FedAvg. Give ``target_epsilon`` (σ is calibrated to it) or ``noise_multiplier``.

    ``clip: fixed`` bounds every client's update at ``clip_norm``; ``clip: adaptive`` adapts the bound towards the
    ``target_quantile`` of update norms with a private (noised) count each round (Andrew, Thakkar, McMahan & Ramaswamy,
    NeurIPS 2021); its count noise ``count_noise_std`` is accounted with the update noise.
    ``delta: auto`` is the largest power of ten ≤ 1/(10·clients).
    """

    clip: Literal["fixed", "adaptive"] = "fixed"
    clip_norm: float = Field(1.0, gt=0)
    target_quantile: float = Field(0.5, gt=0, lt=1)
    clip_learning_rate: float = Field(0.2, gt=0)
    count_noise_std: Optional[float] = Field(None, gt=0)
    level: Literal["client"] = "client"


class SecureAggregationConfig(Section):
    """Flower's SecAgg+ (``secaggplus_mod`` on every SuperNode, the SecAgg+ workflow in the ServerApp): the server
    receives each round's masked vectors and unmasks only their sum. Applies to deployments
    (:mod:`tfresp.federated.deploy`); in-process simulation has no separate server to hide anything from.

    ``num_shares``: the key shares per node (a fraction of the round's nodes, or a count > 2);
    ``reconstruction_threshold``: shares needed to unmask (a fraction of ``num_shares``, at least 2): a round
    survives ``nodes - threshold`` dropouts. Each node sends its clients' mean *update* (local − global weights),
    multiplied by ``rows / max_weight``, clipped to ±``clipping_range`` and stochastically rounded onto
    ``quantization_range`` integer levels; masks are drawn mod ``modulus_range``. ``max_weight`` must be at least a
    node's training rows (the ClientApp refuses otherwise).
    """

    num_shares: Union[int, float] = 1.0
    reconstruction_threshold: Union[int, float] = 0.66
    clipping_range: float = Field(8.0, gt=0)
    quantization_range: int = Field(2**22, ge=2)
    modulus_range: int = Field(2**32, ge=4, le=2**32)
    max_weight: float = Field(100_000.0, gt=0)

    @model_validator(mode="after")
    def _ranges(self):
        if self.modulus_range & (self.modulus_range - 1):
            raise ValueError(f"modulus_range={self.modulus_range} must be a power of 2")
        if self.modulus_range <= self.quantization_range:
            raise ValueError("modulus_range must exceed quantization_range")
        if isinstance(self.num_shares, float) and not 0 < self.num_shares <= 1:
            raise ValueError("num_shares: a fraction in (0, 1] of the round's nodes, or a count > 2")
        if isinstance(self.num_shares, int) and self.num_shares < 3:
            raise ValueError("num_shares: a count > 2 (or a fraction in (0, 1])")
        t = self.reconstruction_threshold
        if isinstance(t, float) and not 0 < t <= 1:
            raise ValueError("reconstruction_threshold: a fraction in (0, 1] of num_shares, or a count ≥ 2")
        if isinstance(t, int) and t < 2:
            raise ValueError("reconstruction_threshold: a count ≥ 2 (one share would let any node unmask)")
        return self


class FederatedConfig(Section):
    """FedAvg/FedAdam over ``clients`` simulated clients (one process, Flower strategies, no Ray).

    ``partition``: ``iid`` | ``by_column:<col>`` (each client holds rows of one value of ``col``; values with many rows
    are split over several clients) | ``dirichlet:<alpha>`` (label proportions per client ~ Dirichlet(alpha)).
    ``clients_per_round``: a count (int ≥ 1) or a fraction (0 < f < 1) of ``clients``; under DP it sets the Poisson
    rate q = clients_per_round / clients.
    ``min_available``: how many of a round's sampled clients must send an update for the round to count. A sampled
    client that sends none (a node that died, a timeout) is dropped from that round: the round aggregates the updates
    that arrived if at least ``min(min_available, sampled)`` did; otherwise the run stops with the last finished
    round checkpointed (``--resume`` continues). Default ``None``: every sampled client must answer (no silent
    dropouts). The report's ``federated.dropped`` lists, per round, the sampled clients that did not answer.
    ``secure_aggregation``: ``true`` or a :class:`SecureAggregationConfig` (deployments only; see there).
    """

    clients: int = Field(10, ge=2, le=100_000)
    partition: str = "iid"
    rounds: int = Field(10, ge=1)
    clients_per_round: Union[int, float] = 1.0
    local_epochs: int = Field(1, ge=1)
    local_batch_size: int = Field(32, ge=1)
    local_learning_rate: float = Field(0.05, gt=0)
    server_optimizer: Literal["fedavg", "fedadam"] = "fedavg"
    server_learning_rate: Optional[float] = Field(None, gt=0)
    min_available: Optional[int] = Field(None, ge=1)
    dp: Optional[FederatedDPConfig] = None
    secure_aggregation: Optional[SecureAggregationConfig] = None

    @field_validator("secure_aggregation", mode="before")
    @classmethod
    def _secagg_bool(cls, v):
        if v is True:
            return {}
        if v is False:
            return None
        return v

    @field_validator("partition")
    @classmethod
    def _partition(cls, v):
        if v == "iid":
            return v
        kind, _, arg = v.partition(":")
        if kind == "by_column" and arg:
            return v
        if kind == "dirichlet":
            try:
                if float(arg) > 0:
                    return v
            except ValueError:
                pass
        raise ValueError("one of 'iid', 'by_column:<column>', 'dirichlet:<alpha > 0>'")

    @field_validator("clients_per_round")
    @classmethod
    def _cpr(cls, v):
        if isinstance(v, float) and not 0 < v <= 1:
            raise ValueError("a fraction in (0, 1] or a count ≥ 1")
        if isinstance(v, int) and not isinstance(v, bool) and v < 1:
            raise ValueError("a fraction in (0, 1] or a count ≥ 1")
        return v

    @model_validator(mode="after")
    def _min_available(self):
        if self.min_available is not None and self.min_available > self.clients:
            raise ValueError(f"min_available={self.min_available} exceeds clients={self.clients}; it counts the "
                             "sampled clients that must answer in a round")
        return self

    def per_round(self) -> float:
        """Expected clients per round (a count)."""
        v = self.clients_per_round
        return float(v) * self.clients if isinstance(v, float) else float(min(v, self.clients))
