"""Per-round checkpoints of federated training, in the layout of :mod:`tfresp.run.checkpointing`.

After every finished round the server state goes to ``<parent>/.<name>.partial/checkpoints/step-<round>/``:
``ckpt.*`` (the global weights, a TensorFlow checkpoint of the core model), ``server.npz`` (FedAdam's moment
estimates and current weights, when the strategy has them) and ``state.json`` (round number, history with the ε
curve, the DP ledger: σ, effective σ, q, δ, adaptive clip norm; the public RNG state; and the *secret* RNG state of
client sampling and noise, listed under ``secret_keys`` so that :func:`tfresp.run.checkpointing.scrub_secrets` drops it
when the checkpoints move into the finished run directory). The working directory is owner-only (0700, files 0600)
as for centralized runs. Because the layout is the same, :func:`tfresp.run.checkpointing.check_resume` validates a
federated checkpoint (config unchanged, files readable) before anything runs, and ``--resume`` continues after the
last finished round with the same secret stream, so the final ε is that of the full, uninterrupted history.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from tfresp.run import checkpointing as ck
from tfresp.errors import CheckpointError

_SECRET = "secret_rng"


class RoundSaver:
    def __init__(self, config, target, run_dir):
        self.root = ck._ckpt_root(Path(target)) if target is not None else Path(run_dir) / "checkpoints"
        self.digest = ck._config_digest(config.to_dict())
        self.config_yaml = config.to_yaml()

    def save(self, server, core) -> Path:
        rnd = server.rounds_done
        fed = {"rounds_done": rnd, "seconds": server.seconds, "clip_norm": server.clip_norm,
               "ledger": {k: server.state[k] for k in ("delta", "noise_multiplier", "effective_noise_multiplier",
                                                       "noise_source", "count_noise_std", "rounds_cap")
                          if k in server.state},
               "sampling_rate": server.q, "clients": server.n_clients, "public_rng": server.public.bit_generator.state}
        if server.secret is not None:
            fed[_SECRET] = server.secret._rng.bit_generator.state
            fed["secret_keys"] = [_SECRET]
        state = {"format": ck.FORMAT_VERSION, "global_step": rnd, "epoch": rnd, "step_in_epoch": 0,
                 "steps_per_epoch": 1, "config": self.digest, "signature": ck._signature(core.variables),
                 "history": server.history, "callbacks": {"federated": fed}}

        def fill(tmp: Path) -> bool:
            core.set_weights(server.weights)
            tf.train.Checkpoint(model=core).write(str(tmp / "ckpt"))
            opt = {f"{k}{i}": a for k in ("m_t", "v_t", "current_weights")
                   for i, a in enumerate(getattr(server.strategy, k, None) or [])}
            if opt:
                np.savez(tmp / "server.npz", **opt)
            return True

        return ck.write_step(self.root, rnd, state, self.config_yaml, fill)  # holds the secret RNG state: 0700/0600


def restore(point, server, core) -> None:
    """Put the state of checkpoint ``point`` (a :class:`tfresp.run.checkpointing.ResumePoint`) into ``server``."""
    fed = (point.state.get("callbacks") or {}).get("federated")
    if not isinstance(fed, dict) or fed.get("clients") != server.n_clients:
        raise CheckpointError(f"Incompatible checkpoint {str(point.path)!r}: it was not written by a federated run "
                              f"with {server.n_clients} clients")
    if server.secret is not None and _SECRET not in fed:
        raise CheckpointError(f"Invalid checkpoint {str(point.path)!r}: the DP state (secret sampling/noise "
                              "generator) is missing; a finished run's scrubbed checkpoints cannot be resumed")
    saved_sig = [list(s[1]) for s in point.state["signature"]]
    if saved_sig != [list(s[1]) for s in ck._signature(core.variables)]:
        raise CheckpointError(f"Incompatible checkpoint {str(point.path)!r}: model variables differ")
    tf.train.Checkpoint(model=core).read(str(point.path / "ckpt")).assert_existing_objects_matched()
    server.weights = [np.array(w) for w in core.get_weights()]
    npz = point.path / "server.npz"
    if npz.exists():
        with np.load(npz) as f:
            for k in ("m_t", "v_t", "current_weights"):
                arrays = [f[f"{k}{i}"] for i in range(len(server.weights)) if f"{k}{i}" in f.files]
                if arrays:
                    setattr(server.strategy, k, arrays)
    server.rounds_done = int(fed["rounds_done"])
    server.seconds = float(fed["seconds"])
    server.clip_norm = fed["clip_norm"]
    server.history = {k: list(v) for k, v in point.state["history"].items()}
    server.history.setdefault("dropped", [[] for _ in server.history.get("round", [])])  # older checkpoints
    server.public.bit_generator.state = fed["public_rng"]
    server.state.update(fed["ledger"])
    if server.secret is not None:
        server.secret._rng.bit_generator.state = fed[_SECRET]
