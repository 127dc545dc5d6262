"""Config of federated training (``federated:``)."""
from typing import List, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from tfresp._configbase import Section
from tfresp.errors import ConfigError
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


class SiteConfig(Section):
    """One site of a cross-silo run: its ``name`` and its file ``source`` (read only by that site's node).

    ``source`` may be left out in a deployment's config: the server needs the names only, and each node is given
    its own file (node config); a simulation (every site in one process) needs every source."""

    name: str = Field(min_length=1, max_length=100)
    source: Optional[str] = Field(None, min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if not all(ch.isalnum() or ch in "-_." for ch in v):
            raise ValueError("letters, digits, '-', '_' and '.' only (it names the site in the report and on its node)")
        return v


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
    #: cross-silo: one entry per site (≥ 2), each with its own file; see :mod:`tfresp.federated.sites_run`
    sites: Optional[List[SiteConfig]] = None

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


#: sections that need the pooled (central) rows, refused in a sites run, with the reason
_CENTRAL = {
    "explain": "explanations (SHAP/IG/LIME) read central rows and background data",
    "robustness": "robustness audits and adversarial training attack central test rows",
    "compression": "pruning schedules, int8 calibration and the size/accuracy audit need central rows",
    "fairness": "fairness mitigation fits thresholds / weights on central rows; a sites run reports the "
                "data.sensitive gaps from the sites' federated counts instead",
    "scorecard": "the scorecard reads per-example central test predictions",
}


def sites_problems(config) -> list:
    """Every problem of a sites run's config (``federated.sites``) as ``(field, value, message)`` tuples; [] when
    the run has no sites. Checked when the config is loaded, before any data is read."""
    from tfresp.federated import schema

    fed = config.federated
    if fed is None or fed.sites is None:
        return []
    out = []
    sites = fed.sites
    names = [s.name for s in sites]
    sources = [s.source for s in sites if s.source is not None]
    if len(sites) < 2:
        out.append(("federated.sites", names, "a sites run needs at least 2 sites"))
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        out.append(("federated.sites", dup, "site names must be unique"))
    dup_src = sorted({s for s in sources if sources.count(s) > 1})
    if dup_src:
        out.append(("federated.sites", dup_src, "each site has its own file; these sources repeat"))
    if "clients" in fed.model_fields_set and fed.clients != len(sites):
        out.append(("federated.clients", fed.clients, f"with sites the clients are the {len(sites)} sites. "
                    "Remedy: leave federated.clients out"))
    if fed.partition != "iid":
        out.append(("federated.partition", fed.partition, "with sites each site's file is its partition. "
                    "Remedy: leave federated.partition out"))
    if fed.dp is not None:
        out.append(("federated.dp", "on", "client-level DP-FedAvg is for the partition (cross-device) path; "
                    "with sites use privacy: (example-level DP-SGD at every site, ε per site)"))
    if fed.min_available is not None and fed.min_available > len(sites):
        out.append(("federated.min_available", fed.min_available, f"exceeds the {len(sites)} sites"))
    if isinstance(fed.clients_per_round, int) and fed.clients_per_round > len(sites):
        out.append(("federated.clients_per_round", fed.clients_per_round, f"exceeds the {len(sites)} sites"))
    if fed.server_optimizer != "fedavg" and config.privacy is not None:
        out.append(("federated.server_optimizer", fed.server_optimizer, "with privacy the sites are averaged "
                    "with equal weights (FedAvg); FedAdam is not offered there yet"))
    dc = config.data
    if "source" in dc.model_fields_set and dc.source != type(dc).model_fields["source"].default:
        out.append(("data.source", dc.source, "a sites run reads only the sites' files (federated.sites[].source); "
                    "the server opens no data. Remedy: leave data.source out"))
    if not dc.label:
        out.append(("data.label", None, "a sites run needs the label column named"))
    elif dc.label not in (dc.categories or {}):
        out.append((f"data.categories.{dc.label}", ConfigError.MISSING, "a sites run needs the classes declared "
                    "(the server builds the model without data). Remedy: declare the label values"))
    if isinstance(dc.split.test, str) and dc.split.test != "official":
        out.append(("data.split.test", dc.split.test, "a central test file is central data; each site holds "
                    "out its own test rows. Remedy: a fraction (or 'official': 20% of each site's file)"))
    if dc.text:
        out.append(("data.text", dc.text, "sites runs are tabular"))
    if dc.deidentify is not None:
        out.append(("data.deidentify", "on", "not applied at the sites yet. Remedy: de-identify the site files"))
    if dc.missing != "error":
        out.append(("data.missing", dc.missing, "imputation is not offered at the sites yet. Remedy: write "
                    "missing values as a declared category"))
    undeclared = schema.undeclared_features(config)
    if undeclared:
        out.append(("data.features", undeclared, "a sites run encodes every feature from declared values only "
                    "(nothing is fitted on pooled rows); these columns have none. Remedy: declare them in "
                    "data.categories (categorical) or data.numeric_ranges (numeric)"))
    elif dc.label and not schema.feature_columns(config):
        out.append(("data.categories", None, "no declared feature column. Remedy: declare every feature's values "
                    "in data.categories / data.numeric_ranges"))
    both = sorted(set(dc.categories or {}) & set(dc.numeric_ranges or {}))
    if both:
        out.append(("data.categories", both, "declared both as categories and numeric ranges; declare each once"))
    if config.task != "classification":
        out.append(("task", config.task, "sites runs are classification"))
    if config.model.kind != "mlp":
        out.append(("model.kind", config.model.kind, "a sites run builds an MLP from the declared schema"))
    for key, why in _CENTRAL.items():
        if getattr(config, key, None) is not None:
            out.append((key, "on", f"needs central rows: {why}. Remedy: remove it from a sites run"))
    if getattr(config, "extensions", None):
        out.append(("extensions", sorted(config.extensions), "extension concerns are not run in a sites run"))
    if config.export.tflite:
        out.append(("export.tflite", config.export.tflite, "TFLite conversion (int8 calibration) needs central "
                    "rows; not offered in a sites run"))
    if config.gates:
        out.append(("gates", len(config.gates), "gates read the central report sections; not offered in a sites "
                    "run yet"))
    pc = config.privacy
    if pc is not None:
        if "audit" in pc.model_fields_set and pc.audit:
            out.append(("privacy.audit", True, "membership-inference audits need central training and test rows. "
                        "Remedy: privacy.audit: false (a sites run reports ε per site)"))
        if pc.canaries:
            out.append(("privacy.canaries", pc.canaries, "canary audits need central rows"))
        if pc.static_shapes is True:
            out.append(("privacy.static_shapes", True, "not offered at the sites"))
    return out

