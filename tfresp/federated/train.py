"""The federated training loop: local training on each sampled client, aggregation by a Flower strategy.

Flower (``flwr``) provides the server strategies (``FedAvg``, ``FedAdam``: aggregation and the server optimizer);
clients are simulated in this process (no Ray, no network), each training the run's own Keras model (with every
per-example loss term other concerns attached) on its own rows. Under ``federated.dp`` the noisy mean update
computed by :mod:`tfresp.federated.dp` is what reaches the strategy, so the strategy's output is post-processing.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Dict, List

import numpy as np
import tf_keras as keras

from tfresp.errors import BudgetExhaustedError, ConfigError
from tfresp.federated import dp as fdp
from tfresp.federated.partition import partition
from tfresp.privacy import accounting

log = logging.getLogger("tfresp")


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
    import tensorflow as tf

    logits = core.predict(x, batch_size=4096, verbose=0)
    proba = tf.nn.softmax(logits).numpy()
    loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-7, 1.0))))
    return {"loss": loss, "accuracy": float(np.mean(proba.argmax(axis=1) == y))}


def fit_federated(ctx) -> None:
    """Train ``ctx.core`` with federated averaging; fills ``ctx.history`` and ``ctx.own("federated").summary``."""
    from tfresp.data.dataset import make_dataset

    cfg = ctx.config.federated
    train = ctx.data.train
    parts = partition(cfg.clients, cfg.partition, train.y, getattr(train, "frame", None), ctx.config.seed)
    n_clients = len(parts)
    per_round = cfg.per_round()
    q = min(1.0, per_round / n_clients)
    model = ctx.model
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=cfg.local_learning_rate), weighted_metrics=[])
    weights = [np.array(w) for w in ctx.core.get_weights()]
    strategy = _strategy(cfg, weights)
    dpc = cfg.dp
    secret = fdp.SecretRandom() if dpc is not None else None
    public = np.random.default_rng(ctx.config.seed)
    state = {"clients": n_clients, "rounds_planned": cfg.rounds, "sampling_rate": q, "partition": cfg.partition}
    if dpc is not None:
        delta = fdp.resolve_delta(dpc, n_clients)
        count_std = dpc.count_noise_std or (max(per_round, 1.0) / 20.0 if dpc.clip == "adaptive" else None)
        if dpc.noise_multiplier is None:
            z_eff = fdp.calibrate(dpc.target_epsilon, q, cfg.rounds, delta, dpc.accountant)
            sigma = z_eff if count_std is None else fdp.update_noise_for(z_eff, count_std)
            how = f"calibrated to target ε={dpc.target_epsilon:g}"
        else:
            sigma = float(dpc.noise_multiplier)
            z_eff = fdp.effective_noise(sigma, count_std)
            how = "given"
        cap = cfg.rounds
        if dpc.target_epsilon is not None:
            cap = accounting.max_steps_within(dpc.target_epsilon, z_eff, q, delta, dpc.accountant, cfg.rounds)
            if cap == 0:
                raise BudgetExhaustedError(
                    f"`federated.dp.noise_multiplier`: even one round exceeds target_epsilon={dpc.target_epsilon} "
                    f"at delta={delta:g}, q={q:.4g}. Remedy: raise the noise multiplier or the budget")
        state.update(delta=delta, noise_multiplier=sigma, effective_noise_multiplier=z_eff, noise_source=how,
                     count_noise_std=count_std, clip=dpc.clip, rounds_cap=cap)
    clip_norm = dpc.clip_norm if dpc is not None else None
    history = {"round": [], "val_loss": [], "val_accuracy": [], "participants": []}
    if dpc is not None:
        history.update(epsilon=[], clip_norm=[])
    eval_x, eval_y = (ctx.data.validation.x, ctx.data.validation.y) if ctx.data.validation is not None else \
        (None, None)
    extras = ctx.train_extras
    t0 = time.perf_counter()
    rounds_done = 0
    for rnd in range(1, cfg.rounds + 1):
        if dpc is not None and rnd > state["rounds_cap"]:
            state["stopped_early"] = True
            break
        if dpc is not None:
            chosen = secret.poisson_sample(n_clients, q)
        else:
            chosen = np.sort(public.choice(n_clients, size=max(1, int(round(per_round))), replace=False))
        updates, results, norms = [], [], []
        for k in chosen:
            idx = parts[k]
            ctx.core.set_weights(weights)
            ds = make_dataset(train.x[idx], train.y[idx], {name: v[idx] for name, v in extras.items()},
                              min(cfg.local_batch_size, len(idx)), shuffle=True, seed=int(public.integers(2**31)))
            model.fit(ds, epochs=cfg.local_epochs, verbose=0)
            local = ctx.core.get_weights()
            if dpc is None:
                results.append((local, len(idx)))
            else:
                delta_k, norm = fdp.clip_update([a - b for a, b in zip(local, weights)], clip_norm)
                updates.append(delta_k)
                norms.append(norm)
        if dpc is not None:
            mean = fdp.noisy_mean(updates, weights, clip_norm, sigma, q * n_clients, secret)
            results = [([w + m for w, m in zip(weights, mean)], 1)]
            if dpc.clip == "adaptive":
                below = sum(n <= clip_norm for n in norms)
                noisy = (below - 0.5 * len(norms) + secret.normal((), count_std)) / (q * n_clients) + 0.5
                clip_norm = float(clip_norm * math.exp(-dpc.clip_learning_rate * (noisy - dpc.target_quantile)))
        if results:
            weights = _aggregate(strategy, rnd, results)
        ctx.core.set_weights(weights)
        rounds_done = rnd
        history["round"].append(rnd)
        history["participants"].append(int(len(chosen)))
        if eval_x is not None:
            ev = _evaluate(ctx.core, eval_x, eval_y)
            history["val_loss"].append(ev["loss"])
            history["val_accuracy"].append(ev["accuracy"])
        if dpc is not None:
            history["epsilon"].append(fdp.epsilon(z_eff, q, rnd, state["delta"], dpc.accountant))
            history["clip_norm"].append(clip_norm)
    state["rounds"] = rounds_done
    state["seconds"] = time.perf_counter() - t0
    state["parts"] = parts
    if dpc is not None:
        state["epsilon"] = fdp.epsilon(z_eff, q, rounds_done, state["delta"], dpc.accountant)
    ctx.own("federated").summary = state
    ctx.history = history
    log.info("federated: %d rounds over %d clients (q=%.3g)", rounds_done, n_clients, q)

