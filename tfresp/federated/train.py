"""The federated training loop: local training on each sampled client, aggregation by a Flower strategy.

Flower (``flwr``) provides the server strategies (``FedAvg``, ``FedAdam``: aggregation and the server optimizer).
The server side of a round (client sampling, clipping, noise, aggregation, accounting) is :class:`Server`; where the
clients run is a *transport*: by default they are simulated in this process, each training the run's own Keras
model (with every per-example loss term other concerns attached) on its own rows; in a Flower deployment
(:mod:`tfresp.federated.app`) the same :class:`Server` sends the round's weights to SuperNodes, which run
:func:`local_fit` on their own partitions. Under ``federated.dp`` the noisy mean update computed by
:mod:`tfresp.federated.dp` is what reaches the strategy, so the strategy's output is post-processing.

Every finished round is checkpointed (:mod:`tfresp.federated.checkpoint`); ``--resume`` continues after the last one.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tf_keras as keras

from tfresp.errors import BudgetExhaustedError, ConfigError, TfrespError
from tfresp.federated import dp as fdp
from tfresp.federated.partition import partition
from tfresp.privacy import accounting

log = logging.getLogger("tfresp")

class SecureSum:
    """What a securely aggregating transport returns instead of per-client weights: the new global weights (global +
    the rows-weighted mean update of the clients inside the sum), which clients are inside it, and their total rows.
    The server never holds an individual client's (or node's) update."""

    def __init__(self, weights: Optional[List[np.ndarray]], clients: Sequence[int], rows: Optional[int]):
        self.weights, self.clients, self.rows = weights, list(clients), rows


#: ``transport(round, weights, jobs) -> {client: (local_weights, rows)}`` or a :class:`SecureSum`;
#: ``jobs``: [(client, shuffle seed)]. A transport function may carry ``.secure`` (a dict for the report).
Transport = Callable[[int, List[np.ndarray], List[Tuple[int, int]]], Dict[int, Tuple[List[np.ndarray], int]]]
_TRANSPORT: Optional[Tuple[Transport, str]] = None


@contextlib.contextmanager
def use_transport(transport: Transport, description: str):
    """Run the clients of :func:`fit_federated` through ``transport`` (a Flower grid) instead of in-process;
    ``description`` says where they ran (in the report)."""
    global _TRANSPORT
    before, _TRANSPORT = _TRANSPORT, (transport, description)
    try:
        yield
    finally:
        _TRANSPORT = before


def on_round(event: str, rnd: int, weights: List[np.ndarray]) -> None:
    """Hook called with ``event`` "start" (the global weights a round starts from) and "end" (after the round's
    checkpoint is written). Does nothing; tests replace it to observe or interrupt a run."""


def _strategy(cfg, initial: List[np.ndarray]):
    try:
        from flwr.common import ndarrays_to_parameters
        from flwr.server.strategy import FedAdam, FedAvg
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError([("federated", None, f"needs Flower: pip install 'tfresp[federated]' ({exc})")]) from None
    logging.getLogger("flwr").setLevel(logging.ERROR)  # Flower warns about unset metric aggregators every round
    params = ndarrays_to_parameters(initial)
    if cfg.server_optimizer == "fedadam":
        return FedAdam(initial_parameters=params, eta=cfg.server_learning_rate or 0.01, eta_l=cfg.local_learning_rate,
                       beta_1=0.9, beta_2=0.99, tau=1e-3)
    return FedAvg(initial_parameters=params)


def _aggregate(strategy, server_round: int, results: List[tuple]) -> List[np.ndarray]:
    """``results``: (weights, num_examples) per client; returns the strategy's new global weights."""
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

    fit_results = [(None, FitRes(status=Status(code=Code.OK, message=""), parameters=ndarrays_to_parameters(w),
                                 num_examples=int(n), metrics={})) for w, n in results]
    params, _ = strategy.aggregate_fit(server_round, fit_results, [])
    return parameters_to_ndarrays(params)


def _evaluate(core, x, y) -> Dict[str, float]:
    from tfresp.run.context import predict_proba

    proba = predict_proba(core, x, batch_size=4096)
    loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-7, 1.0))))
    return {"loss": loss, "accuracy": float(np.mean(proba.argmax(axis=1) == y))}


def compile_local(model, cfg) -> None:
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=cfg.local_learning_rate), weighted_metrics=[])


def local_fit(model, core, weights: Sequence[np.ndarray], x, y, extras: Dict[str, np.ndarray], cfg,
              seed: int) -> List[np.ndarray]:
    """One client's local training from the global ``weights`` on its own rows; returns its new weights."""
    from tfresp.data.dataset import make_dataset

    core.set_weights(weights)
    ds = make_dataset(x, y, extras, min(cfg.local_batch_size, len(y)), shuffle=True, seed=int(seed))
    model.fit(ds, epochs=cfg.local_epochs, verbose=0)
    return [np.array(w) for w in core.get_weights()]


class ClientsUnavailableError(TfrespError):
    """Fewer sampled clients answered in a round than ``federated.min_available``; the run can be resumed."""

    exit_code = 1


class Server:
    """The server side of federated training: sampling, (DP) aggregation, accounting and the round history."""

    def __init__(self, cfg, n_clients: int, weights: List[np.ndarray], seed: int):
        self.cfg, self.n_clients, self.weights = cfg, n_clients, weights
        per_round = cfg.per_round()
        self.q = min(1.0, per_round / n_clients)
        self.strategy = _strategy(cfg, weights)
        self.dpc = dpc = cfg.dp
        self.secret = fdp.SecretRandom() if dpc is not None else None
        self.public = np.random.default_rng(seed)
        self.rounds_done = 0
        self.resumable = True  # False for a sites run (no round checkpoints yet)
        self.seconds = 0.0
        self.state = {"clients": n_clients, "rounds_planned": cfg.rounds, "sampling_rate": self.q,
                      "partition": cfg.partition}
        self.history = {"round": [], "val_loss": [], "val_accuracy": [], "participants": [], "dropped": []}
        self.clip_norm = dpc.clip_norm if dpc is not None else None
        if dpc is None:
            return
        self.history.update(epsilon=[], clip_norm=[])
        delta = fdp.resolve_delta(dpc, n_clients)
        count_std = dpc.count_noise_std or (max(per_round, 1.0) / 20.0 if dpc.clip == "adaptive" else None)
        if dpc.noise_multiplier is None:
            z_eff = fdp.calibrate(dpc.target_epsilon, self.q, cfg.rounds, delta, dpc.accountant)
            if count_std is not None and 2 * count_std <= z_eff:
                raise ConfigError([("federated.dp.count_noise_std", count_std,
                                    f"adaptive clipping's count noise must exceed half the calibrated noise "
                                    f"multiplier {z_eff:.3g}. Remedy: set count_noise_std above {z_eff / 2:.3g}")])
            sigma = z_eff if count_std is None else fdp.update_noise_for(z_eff, count_std)
            how = f"calibrated to target ε={dpc.target_epsilon:g}"
        else:
            sigma = float(dpc.noise_multiplier)
            z_eff = fdp.effective_noise(sigma, count_std)
            how = "given"
        cap = cfg.rounds
        if dpc.target_epsilon is not None:
            cap = accounting.max_steps_within(dpc.target_epsilon, z_eff, self.q, delta, dpc.accountant, cfg.rounds)
            if cap == 0:
                raise BudgetExhaustedError(
                    f"`federated.dp.noise_multiplier`: even one round exceeds target_epsilon={dpc.target_epsilon} "
                    f"at delta={delta:g}, q={self.q:.4g}. Remedy: raise the noise multiplier or the budget")
        self.state.update(delta=delta, noise_multiplier=sigma, effective_noise_multiplier=z_eff, noise_source=how,
                          count_noise_std=count_std, clip=dpc.clip, rounds_cap=cap)

    def over_budget(self, rnd: int) -> bool:
        return self.dpc is not None and rnd > self.state["rounds_cap"]

    def jobs(self) -> List[Tuple[int, int]]:
        """This round's clients (secret Poisson sampling under DP) with a public shuffle seed each."""
        if self.dpc is not None:
            chosen = self.secret.poisson_sample(self.n_clients, self.q)
        else:
            chosen = np.sort(self.public.choice(self.n_clients, size=max(1, int(round(self.cfg.per_round()))),
                                                replace=False))
        return [(int(k), int(self.public.integers(2**31))) for k in chosen]

    def finish_round(self, rnd: int, jobs, local: Dict[int, Tuple[List[np.ndarray], int]]) -> List[np.ndarray]:
        """Aggregate the clients' local weights (clip + noise under DP) into the new global weights.

        A sampled client missing from ``local`` (it sent no update) is dropped from this round; the round counts if
        at least ``min(federated.min_available, sampled)`` clients answered (default: all of them), else
        :class:`ClientsUnavailableError` stops the run with the previous round's checkpoint in place.

        Under client-level DP-FedAvg a dropout does not change ε: the dropped client's data are simply not used in
        this round, and "client k contributes nothing" is exactly the removal that the add/remove-one-client
        adjacency already covers. For every other client the round is still PoissonSampled(q, Gaussian(z)): its
        inclusion was an independent secret Bernoulli(q) draw, the noise is still calibrated to the clip bound on
        the *sum* and the sum is still divided by the fixed expected count q·N (not by the number that answered,
        which would change the sensitivity). The server must NOT re-sample to fill the gap: a second draw would give
        the remaining clients an inclusion probability above q, which the accountant does not cover.
        """
        secure = isinstance(local, SecureSum)
        inside = set(local.clients) if secure and local.weights is not None else set()
        sampled = [k for k, _ in jobs]
        answered = [k for k in sampled if (k in inside if secure else k in local)]
        missing = [k for k in sampled if k not in answered]
        need = min(self.cfg.min_available or len(sampled), len(sampled))
        if len(answered) < need:
            done = f"rounds 1..{self.rounds_done} are checkpointed" if self.rounds_done else "no round finished yet"
            remedy = "run the same command with --resume"
            if not self.resumable:
                done, remedy = "a sites run cannot be resumed yet", "start the run again"
            halted = " (secure aggregation needs at least reconstruction_threshold nodes)" if secure else ""
            raise ClientsUnavailableError(
                f"`federated.min_available`: round {rnd} needs updates from {need} of its {len(sampled)} sampled "
                f"clients; only {len(answered)} answered{halted}. Received: no update from clients {missing}. The "
                f"run stopped; {done}. Remedy: restart the missing clients/SuperNodes and {remedy} (or lower "
                f"federated.min_available)")
        if missing:
            log.warning("federated round %d: no update from sampled clients %s; the round uses the %d that answered",
                        rnd, missing, len(answered))
        jobs = [(k, s) for k, s in jobs if k in answered]
        dpc, st = self.dpc, self.state
        results = []
        if secure:  # only the sum exists here (no clipping, no noise: federated.dp is refused with it)
            results = [(local.weights, 1)]
            self.history.setdefault("secure_rows", []).append(local.rows)
        elif dpc is None:
            results = [local[k] for k, _ in jobs]
        else:
            updates, norms = [], []
            for k, _ in jobs:
                delta_k, norm = fdp.clip_update([a - b for a, b in zip(local[k][0], self.weights)], self.clip_norm)
                updates.append(delta_k)
                norms.append(norm)
            expected = self.q * self.n_clients
            mean = fdp.noisy_mean(updates, self.weights, self.clip_norm, st["noise_multiplier"], expected, self.secret)
            results = [([w + m for w, m in zip(self.weights, mean)], 1)]
            if dpc.clip == "adaptive":
                below = sum(n <= self.clip_norm for n in norms)
                noisy = (below - 0.5 * len(norms) + self.secret.normal((), st["count_noise_std"])) / expected + 0.5
                self.clip_norm = float(self.clip_norm * math.exp(-dpc.clip_learning_rate
                                                                 * (noisy - dpc.target_quantile)))
        if results:
            self.weights = _aggregate(self.strategy, rnd, results)
        self.rounds_done = rnd
        self.history["round"].append(rnd)
        self.history["participants"].append(len(jobs))
        self.history["dropped"].append(missing)
        if dpc is not None:
            self.history["epsilon"].append(self.epsilon(rnd))
            self.history["clip_norm"].append(self.clip_norm)
        return self.weights

    def epsilon(self, rounds: int) -> float:
        st = self.state
        return fdp.epsilon(st["effective_noise_multiplier"], self.q, rounds, st["delta"], self.dpc.accountant)


def in_process(ctx, parts: List[np.ndarray]) -> Transport:
    """The default transport: every client trains ``ctx.model`` in this process on its rows."""
    train, extras = ctx.data.train, ctx.train_extras
    cfg = ctx.config.federated

    def run(rnd, weights, jobs):
        out = {}
        for k, seed in jobs:
            idx = parts[k]
            out[k] = (local_fit(ctx.model, ctx.core, weights, train.x[idx], train.y[idx],
                                {name: v[idx] for name, v in extras.items()}, cfg, seed), len(idx))
        return out

    return run


def fit_federated(ctx) -> None:
    """Train ``ctx.core`` with federated averaging; fills ``ctx.history`` and ``ctx.own("federated").summary``."""
    from tfresp.federated import checkpoint

    cfg = ctx.config.federated
    train = ctx.data.train
    parts = partition(cfg.clients, cfg.partition, train.y, getattr(train, "frame", None), ctx.config.seed)
    compile_local(ctx.model, cfg)
    server = Server(cfg, len(parts), [np.array(w) for w in ctx.core.get_weights()], ctx.config.seed)
    point = ctx.resume_point
    if point is not None:
        checkpoint.restore(point, server, ctx.core)
        log.info("federated: resuming after round %d from %s", server.rounds_done, point.path)
    saver = checkpoint.RoundSaver(ctx.config, ctx.target, ctx.run_dir)
    transport, where = _TRANSPORT or (in_process(ctx, parts), "clients simulated in-process")
    eval_x, eval_y = (ctx.data.validation.x, ctx.data.validation.y) if ctx.data.validation is not None else \
        (None, None)
    for rnd in range(server.rounds_done + 1, cfg.rounds + 1):
        if server.over_budget(rnd):
            server.state["stopped_early"] = True
            break
        t0 = time.perf_counter()
        on_round("start", rnd, server.weights)
        jobs = server.jobs()
        weights = server.finish_round(rnd, jobs, transport(rnd, server.weights, jobs))
        ctx.core.set_weights(weights)
        if eval_x is not None:
            ev = _evaluate(ctx.core, eval_x, eval_y)
            server.history["val_loss"].append(ev["loss"])
            server.history["val_accuracy"].append(ev["accuracy"])
        server.seconds += time.perf_counter() - t0
        saver.save(server, ctx.core)
        on_round("end", rnd, weights)
    ctx.core.set_weights(server.weights)
    state = server.state
    state.update(rounds=server.rounds_done, seconds=server.seconds, parts=parts, clients_run=where,
                 secure_aggregation=getattr(transport, "secure", None),
                 resumed_after_round=point.state["global_step"] if point is not None else None)
    if server.dpc is not None:
        state["epsilon"] = server.epsilon(server.rounds_done)
    ctx.own("federated").summary = state
    # per-round lists of dropped clients go to the report's federated section, not to the (numeric) curves
    state["dropped"] = server.history["dropped"]
    state["secure_rows"] = server.history.get("secure_rows")
    ctx.history = {k: v for k, v in server.history.items() if k not in ("dropped", "secure_rows")}
    log.info("federated: %d rounds over %d clients (q=%.3g)", server.rounds_done, len(parts), server.q)
