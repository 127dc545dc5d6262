"""The federated concern: validation before training, the trainer slot (rounds of
:func:`tfresp.federated.train.fit_federated` replace ``model.fit``) and the report's ``federated`` section; with
client-level DP its claim is the run's ``privacy`` section (``ctx.privacy_claim``)."""
from __future__ import annotations

import numpy as np

from tfresp.concerns import Concern, Contribution, register
from tfresp.federated.state import FederatedState
from tfresp.errors import ConfigError


def statement(sec: dict) -> str:
    return (
        f"The global model satisfies ({sec['epsilon']:.3g}, {sec['delta']:.1e})-differential privacy at the CLIENT "
        "level: adding or removing one client's whole data changes the distribution of the released model by at "
        f"most that much. Mechanism: DP-FedAvg over {sec['rounds']} rounds; each client joined a round by Poisson "
        f"sampling with rate q = {sec['sampling_rate']:.4g} (secret draws); each participating client's model update "
        f"was clipped to L2 norm {sec['clip_norm_initial']:g} ({sec['clip']} clipping) and Gaussian noise with "
        f"effective multiplier {sec['effective_noise_multiplier']:.4g} was added once per round to the sum; ε is "
        f"computed with dp-accounting ({sec['accountant'].upper()}). Not covered: the preprocessing statistics "
        "(scaling, category vocabularies) were fitted on the pooled training rows before federation (declare them "
        "in the config for a real deployment); the per-round validation curve uses the server's held-out "
        "validation split; the server is trusted (it receives each sampled client's unclipped update, clips it and "
        "adds the noise: central DP, no secure aggregation); the number of clients is treated as public; a sampled "
        "client that sent no update contributed nothing to that round (its removal is within the adjacency; the "
        "server did not re-sample to replace it; which clients were sampled or dropped out is secret and withheld "
        "from the report); a client's "
        "rows are protected together, "
        "but a person present in several clients only up to group privacy.")


def secure_statement(sa: dict) -> str:
    return (
        "Secure aggregation (Flower SecAgg+, semi-honest). The server CAN see: which SuperNodes took part in each "
        "round and which dropped out; the masked vectors (uniform mod the modulus without the masks) and the "
        "encrypted key shares it relays; after unmasking, the rows-weighted mean of the participating nodes' updates "
        "and their total rows. The server CANNOT see one node's update or its row count, as long as it follows the "
        "protocol and fewer than reconstruction_threshold nodes collude with it (Flower's SecAgg+ has no consistency "
        "checks against a server that lies about dropouts). A round needs at least reconstruction_threshold (≥ 2) "
        "nodes, so a sum never holds a single node's update. Each node's update is multiplied by rows / "
        f"max_weight ({sa['max_weight']:g}), clipped to ±{sa['clipping_range']:g} and stochastically rounded onto "
        f"{sa['quantization_range']} levels before masking (an unbiased rounding error, measured in "
        "tests/federated/test_secagg.py). Not covered: the global model after each round is sent to every node in "
        "the clear over TLS; where SuperNodes host partitions of one dataset (federated.partition) the ServerApp "
        "itself loaded that dataset, so secure aggregation hides updates but not the rows.")


@register
class Federated(Concern):
    config_key = "federated"
    State = FederatedState
    example = {"federated": {"clients": 4, "rounds": 1, "clients_per_round": 2, "local_batch_size": 64}}
    example_excludes = ("privacy", "compression", "robustness")  # example-level DP, pruning, robust training

    def validate(self, ctx) -> None:
        cfg = ctx.config
        problems = []
        if cfg.privacy is not None:
            problems.append(("privacy", "on", "example-level DP-SGD and federated training cannot be combined here; "
                                              "use federated.dp for client-level DP"))
        if cfg.task != "classification":
            problems.append(("task", cfg.task, "federated training supports classification"))
        if cfg.compression is not None and cfg.compression.prune:
            problems.append(("compression.prune", cfg.compression.prune, "pruning schedules run inside model.fit "
                                                                         "and are not applied across rounds"))
        if cfg.robustness is not None and cfg.robustness.train != "none":
            problems.append(("robustness.train", cfg.robustness.train, "adversarial training is not applied in "
                                                                       "federated rounds; evaluate only"))
        if cfg.federated.secure_aggregation is not None and cfg.federated.dp is not None:
            problems.append(("federated.secure_aggregation", "on", "client-level DP-FedAvg clips each client's update "
                             "and adds noise at the server, which secure aggregation hides from it (the server sees "
                             "only the sum, so it cannot clip one update). Distributed noise (each node clipping and "
                             "noising its own update) is not implemented. Remedy: drop federated.dp (secure "
                             "aggregation alone), or drop federated.secure_aggregation (central DP, trusted server)"))
        if problems:
            raise ConfigError(problems)
        spec = cfg.federated.partition
        if spec.startswith("by_column:"):
            col = spec.split(":", 1)[1]
            frame = getattr(ctx.data.train, "frame", None)
            if frame is None or col not in frame.columns:
                raise ConfigError([("federated.partition", spec, f"column {col!r} is not in the training data")])

    def plan(self, ctx) -> Contribution:
        from tfresp.federated.train import fit_federated

        return Contribution(trainer=fit_federated)  # rounds of local training on clients instead of model.fit

    def audit(self, ctx):
        st = ctx.own(self).summary
        if st is None:
            return None
        cfg = ctx.config.federated
        hist = ctx.history
        sec = {"clients": st["clients"], "partition": cfg.partition, "rounds": st["rounds"],
               "rounds_planned": st["rounds_planned"], "clients_per_round": cfg.per_round(),
               "sampling_rate": st["sampling_rate"], "server_optimizer": cfg.server_optimizer,
               "local_epochs": cfg.local_epochs, "local_batch_size": cfg.local_batch_size,
               "engine": "Flower (flwr) server strategy " + ("FedAdam" if cfg.server_optimizer == "fedadam"
                                                               else "FedAvg") + "; " + st["clients_run"],
               "resumed_after_round": st.get("resumed_after_round"),
               "participation": hist.get("participants", []),
               "min_available": cfg.min_available,
               "dropped": [{"round": r, "clients": list(d)} for r, d in zip(hist.get("round", []),
                                                                           st.get("dropped", [])) if d],
               "curve": [{"round": r, "val_loss": l, "val_accuracy": a}
                         for r, l, a in zip(hist.get("round", []), hist.get("val_loss", []),
                                            hist.get("val_accuracy", []))],
               "seconds": st["seconds"]}
        sec["per_client"] = self._per_client(ctx, st)
        if cfg.secure_aggregation is not None:
            sec["secure_aggregation"] = self._secure(cfg, st)
        if cfg.dp is not None:
            # Which clients were sampled is secret (the amplification by sampling in ε rests on it): the ids of
            # sampled clients that sent no update, and each round's count of updates, would reveal some of it.
            # They stay in the private checkpoint history; the report withholds them.
            sec["participation"], sec["dropped"] = None, None
            sec["withheld_under_dp"] = {
                "participation": "per-round count of client updates used: it depends on the secret Poisson draws",
                "dropped": "ids of sampled clients that sent no update: they would reveal who was sampled"}
            dpc = cfg.dp
            priv = {"epsilon": st["epsilon"], "delta": st["delta"], "level": "client",
                    "adjacency": "add/remove one client's whole data", "mechanism": "DP-FedAvg (Poisson-sampled "
                    "clients, per-client update clipping, Gaussian noise on the sum once per round)",
                    "accountant": dpc.accountant, "noise_multiplier": st["noise_multiplier"],
                    "effective_noise_multiplier": st["effective_noise_multiplier"],
                    "noise_multiplier_source": st["noise_source"], "count_noise_std": st["count_noise_std"],
                    "sampling_rate": st["sampling_rate"], "steps": st["rounds"], "rounds": st["rounds"],
                    "clip": dpc.clip, "clip_norm_initial": dpc.clip_norm,
                    "clip_norm_final": (hist.get("clip_norm") or [dpc.clip_norm])[-1],
                    "target_epsilon": dpc.target_epsilon, "stopped_early": bool(st.get("stopped_early")),
                    "epsilon_curve": [{"round": r, "epsilon": e} for r, e in
                                      zip(hist.get("round", []), hist.get("epsilon", []))]}
            priv["statement"] = statement(priv)
            sec["privacy"] = {k: priv[k] for k in ("epsilon", "delta", "level")}
            ctx.privacy_claim = priv  # the privacy concern is off in a federated run: this is the run's DP
        return sec

    @staticmethod
    def _secure(cfg, st) -> dict:
        applied = st.get("secure_aggregation")
        if applied is None:
            return {"applied": False, **cfg.secure_aggregation.model_dump(),
                    "note": "configured, not applied: the clients ran in the server's process (simulation); it "
                            "applies to deployments (python -m tfresp.federated.deploy)"}
        return {"applied": True, **applied, "rows_per_round": st.get("secure_rows"),
                "statement": secure_statement(applied)}

    @staticmethod
    def _per_client(ctx, st) -> dict:
        """Global-model accuracy per client: on the test rows of the client's column value (by_column), or — without
        DP — on each client's own training rows. Under DP a per-client statistic of private rows would be released
        outside the budget, so iid/dirichlet partitions report none."""
        cfg = ctx.config.federated
        if cfg.partition.startswith("by_column:"):
            col = cfg.partition.split(":", 1)[1]
            test = ctx.data.test
            if getattr(test, "frame", None) is None or col not in test.frame.columns:
                return {"note": f"test split has no column {col!r}"}
            proba = ctx.predictions.get("test")
            if proba is None:
                proba = ctx.predict_proba(test.x, batch_size=4096)
            values = test.frame[col].astype(str).to_numpy()
            acc = {}
            for v in np.unique(values):
                m = values == v
                if m.sum() >= 30:
                    acc[str(v)] = float(np.mean(proba[m].argmax(axis=1) == test.y[m]))
            spread = (max(acc.values()) - min(acc.values())) if len(acc) >= 2 else None
            return {"by": f"test rows per value of {col!r} (values with ≥ 30 rows)", "accuracy": acc,
                    "spread": spread}
        if cfg.dp is not None:
            return {"note": "not reported under DP: per-client statistics of private rows would be released outside "
                            "the budget"}
        acc = []
        for idx in st["parts"]:
            logits = ctx.core.predict(ctx.data.train.x[idx], batch_size=4096, verbose=0)
            acc.append(float(np.mean(logits.argmax(axis=1) == ctx.data.train.y[idx])))
        return {"by": "each client's own training rows", "min": float(min(acc)), "max": float(max(acc)),
                "mean": float(np.mean(acc)), "spread": float(max(acc) - min(acc))}
