"""Step-level checkpoints, SIGTERM handling and exact ``--resume``.

A run's step checkpoints live in a *stable per-target working directory* beside the target run
directory, so that a killed run leaves them behind and ``tfresp fit ... --resume`` finds them::

    runs/
      .adult.partial/                 # created at the first checkpoint of runs/adult
        config.yaml                   # the resolved config the checkpoints belong to
        checkpoints/
          step-00000030/              # one complete checkpoint (written to .tmp-*, then renamed)
            ckpt.index, ckpt.data-*   # model weights, optimizer slots + iterations, metric accumulators
            state.json                # epoch/step position, history, callback states (privacy ledger,
                                      # early stopping), RNG state, variable signature, config digest
            early_stopping.npz        # EarlyStopping's best weights, when it has some
          latest                      # the name of the newest complete checkpoint (atomic replace)
      adult/                          # the run directory, appears only when the run succeeded

On success the ``checkpoints/`` folder moves into the run directory (``RUN/checkpoints``, as in
DESIGN.md) and the ``.partial`` folder is removed. The run directory itself still follows
:mod:`tfresp.rundir` (hidden staging directory, renamed into place on success).

Exactness: the training pipeline is one ``tf.data`` pipeline over all epochs
(``dataset.repeat(epochs)``, reshuffled per epoch from the run seed); resuming rebuilds it and
skips the ``global_step`` batches already consumed, restores the weights, the optimizer (slots and
``iterations``, hence learning-rate schedules and tfmot's pruning step), the epoch's running metric
accumulators and the state of every callback exposing ``get_state()``/``set_state(dict)`` (the
privacy ledger), and Keras starts mid-epoch at the saved step. On CPU with op determinism the
resumed run's final weights equal an uninterrupted run's (tests/resilience).
Not restored bit-exactly: randomness drawn by stateful random ops inside layers (dropout with
``tf_keras``' legacy RNG); a resumed run with dropout is statistically, not bitwise, equivalent.

A checkpoint is never overwritten or deleted by a run that failed to read it: a corrupted or
incompatible one raises :class:`~tfresp.errors.CheckpointError` before anything is written.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import threading
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfresp.errors import CheckpointError, ConfigError, TfrespError

log = logging.getLogger("tfresp")

FORMAT_VERSION = 1
KEEP = 2  # complete checkpoints kept in the working directory
# Config keys that may change between a run and its resume (they do not affect training).
_RESUME_FREE = ("out", "report", "gates", "export", "explain", "train.checkpoint_every")


class Preempted(TfrespError):
    """Training stopped on SIGTERM after writing a checkpoint; rerun with ``--resume``."""

    exit_code = 143  # 128 + SIGTERM, what batch schedulers expect from a terminated job


# -- paths --------------------------------------------------------------------------------------
def work_dir(target: Path) -> Path:
    """The stable working directory of ``target``: ``<parent>/.<name>.partial``."""
    target = Path(target)
    return target.parent / f".{target.name}.partial"


def _ckpt_root(target: Path) -> Path:
    return work_dir(target) / "checkpoints"


def _atomic_write_text(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    # created with ``mode`` from the start (os.open), so a secret is never readable by others, not even briefly
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _config_digest(cfg_dict: dict) -> Dict[str, Any]:
    """The training-relevant config flattened to ``{dotted.key: value}``."""
    flat: Dict[str, Any] = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            flat[prefix] = node

    walk(cfg_dict, "")
    return {k: v for k, v in flat.items()
            if not any(k == f or k.startswith(f + ".") for f in _RESUME_FREE)}


def _signature(variables) -> List[List[Any]]:
    return [[v.name, [int(d) for d in v.shape], v.dtype.name] for v in variables]


# -- resume: read and check before any work ------------------------------------------------------
class ResumePoint:
    """A checkpoint read from disk and checked for integrity (not yet applied to a model)."""

    def __init__(self, path: Path, state: dict):
        self.path = path
        self.state = state

    @property
    def global_step(self) -> int:
        return int(self.state["global_step"])


def _read_checkpoint(ckdir: Path) -> ResumePoint:
    state_file = ckdir / "state.json"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"Invalid checkpoint {str(ckdir)!r}: state.json is missing; the checkpoint "
                              "is incomplete or was tampered with") from None
    except (UnicodeDecodeError, json.JSONDecodeError, OSError) as exc:
        raise CheckpointError(f"Invalid checkpoint {str(ckdir)!r}: state.json is corrupted "
                              f"({exc.__class__.__name__}); it was left untouched") from None
    required = {"format": int, "global_step": int, "epoch": int, "step_in_epoch": int,
                "steps_per_epoch": int, "config": dict, "signature": list}
    for key, typ in required.items():
        if not isinstance(state, dict) or not isinstance(state.get(key), typ):
            raise CheckpointError(f"Invalid checkpoint {str(ckdir)!r}: state.json field `{key}` is missing "
                                  f"or not {typ.__name__}; it was left untouched")
    if state["format"] != FORMAT_VERSION:
        raise CheckpointError(f"Incompatible checkpoint {str(ckdir)!r}: format {state['format']}, this tfresp "
                              f"reads format {FORMAT_VERSION}")
    try:
        reader = tf.train.load_checkpoint(str(ckdir / "ckpt"))
        for name in reader.get_variable_to_shape_map():  # read every tensor: catches truncated data files
            reader.get_tensor(name)
    except (tf.errors.OpError, ValueError, IndexError, RuntimeError) as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else exc.__class__.__name__
        raise CheckpointError(f"Invalid checkpoint {str(ckdir)!r}: the TensorFlow checkpoint cannot be read "
                              f"({first}); it was left untouched") from None
    return ResumePoint(ckdir, state)


def check_resume(target: Path, config, resume: bool, overwrite: bool) -> Optional[ResumePoint]:
    """Validate the working directory of ``target`` before any work.

    Returns the checkpoint to resume from (``resume=True``) or None. A fresh run refuses to start over
    an existing working directory unless ``overwrite`` (then it is removed).
    """
    wd = work_dir(target)
    if wd.is_symlink():
        raise ConfigError([("out", str(wd), "the checkpoint working directory is a symbolic link; refusing")])
    if not resume:
        if wd.exists():
            if not overwrite:
                raise ConfigError([("out", str(target), f"has an unfinished run's checkpoints in {wd}; pass "
                                    "--resume to continue it, or --overwrite to discard them")])
            shutil.rmtree(wd)
        return None
    root = _ckpt_root(target)
    latest = root / "latest"
    if not latest.exists():
        raise CheckpointError(f"Nothing to resume for {str(target)!r}: no checkpoint in {str(root)!r} "
                              "(checkpoints are written every `train.checkpoint_every` steps and on SIGTERM)")
    try:
        name = latest.read_text(encoding="utf-8").strip()
    except (UnicodeDecodeError, OSError):
        raise CheckpointError(f"Invalid checkpoint pointer {str(latest)!r}: not readable text") from None
    if not name.startswith("step-") or "/" in name or "\\" in name or name in (".", ".."):
        raise CheckpointError(f"Invalid checkpoint pointer {str(latest)!r}: names {name[:60]!r}, "
                              "expected step-NNNNNNNN")
    point = _read_checkpoint(root / name)
    # A SIGKILLed run also leaves its hidden staging dir (tfresp/rundir.py); drop those older than the checkpoint.
    for stale in Path(target).parent.glob(f".{Path(target).name}.staging-*"):
        if stale.is_dir() and not stale.is_symlink() and stale.stat().st_mtime < point.path.stat().st_mtime:
            shutil.rmtree(stale, ignore_errors=True)
    saved = point.state["config"]
    now = _config_digest(config.to_dict())
    changed = sorted(k for k in set(saved) | set(now) if saved.get(k, "<absent>") != now.get(k, "<absent>"))
    if changed:
        shown = "; ".join(f"{k}: {saved.get(k, '<absent>')!r} -> {now.get(k, '<absent>')!r}" for k in changed[:6])
        raise CheckpointError(f"Incompatible checkpoint {str(point.path)!r}: the config changed since it was "
                              f"written ({shown}); resume with the original config or start a new run")
    return point


# -- the data pipeline ---------------------------------------------------------------------------
def epoch_pipeline(ds: tf.data.Dataset, epochs: int, default_steps: int, skip: int = 0):
    """One pipeline over all epochs, positioned at batch ``skip``.

    Returns ``(dataset, steps_per_epoch)``. A finite per-epoch dataset is repeated ``epochs`` times
    (each repetition reshuffles from the seed, exactly as Keras re-iterating it per epoch would);
    an infinite one is used as is.
    """
    card = int(ds.cardinality().numpy())
    if card == tf.data.INFINITE_CARDINALITY:
        steps = default_steps
    else:
        steps = card if card > 0 else default_steps
        ds = ds.repeat(epochs)
    if skip:
        ds = ds.skip(skip)
    return ds, int(steps)


class _ResumePosition:
    """Stands in for Keras' worker training state so ``fit`` starts at ``(epoch, step)``.

    Keras 2 asks ``model._training_state.maybe_load_initial_counters_from_ckpt`` where to start
    (the hook BackupAndRestore uses for mid-epoch recovery); this is the one place tfresp uses it.
    """

    def __init__(self, epoch: int, step: int):
        self.epoch, self.step, self.used = epoch, step, False

    def maybe_load_initial_counters_from_ckpt(self, steps_per_epoch, initial_epoch, mode=None):
        if self.used:
            return initial_epoch, 0
        self.used = True
        return self.epoch, self.step


def _stateful_callbacks(callbacks) -> Dict[str, Any]:
    """Callbacks with ``get_state``/``set_state``, keyed ``ClassName`` (``ClassName#2`` for a second one)."""
    out = {}
    for cb in callbacks:
        if callable(getattr(cb, "get_state", None)) and callable(getattr(cb, "set_state", None)):
            key, n = cb.__class__.__name__, 1
            while key in out:
                n += 1
                key = f"{cb.__class__.__name__}#{n}"
            out[key] = cb
    return out


# -- the callback --------------------------------------------------------------------------------
class CheckpointSaver(keras.callbacks.Callback):
    """Writes a step checkpoint every ``every`` steps, at the end of training and on SIGTERM.

    Args:
        root: the ``checkpoints`` folder of the run's working directory.
        checkpoint: a ``tf.train.Checkpoint`` over the model and optimizer.
        every: steps between checkpoints (None: only on SIGTERM and at the end).
        steps_per_epoch: batches per epoch of the training pipeline.
        config_digest: training-relevant config (checked on resume).
        stateful: callbacks with ``get_state``/``set_state`` (privacy ledger, ...), by stable key.
        resume: the checkpoint being resumed, or None.
        history: history of the epochs before the resume.
        write: False on non-chief multi-worker replicas (they write into a throwaway folder).
    """

    def __init__(self, root: Path, checkpoint: tf.train.Checkpoint, every: Optional[int], steps_per_epoch: int,
                 config_digest: dict, stateful: Dict[str, Any], resume: Optional[ResumePoint] = None,
                 history: Optional[dict] = None, write: bool = True, config_yaml: str = "",
                 early_stopping=None):
        super().__init__()
        # The batch hook reads no logs: accepting tensor logs spares Keras a host sync after every step.
        self._supports_tf_logs = True
        self.root, self.ckpt, self.every = Path(root), checkpoint, every
        self.steps_per_epoch, self.config_digest, self.stateful = steps_per_epoch, config_digest, stateful
        self.resume, self.history = resume, {k: list(v) for k, v in (history or {}).items()}
        self.write, self.config_yaml = write, config_yaml
        self.global_step = resume.global_step if resume else 0
        self.epoch = resume.state["epoch"] if resume else 0
        self.saved: List[int] = []
        self.preempted = False
        self._sigterm = threading.Event()
        self._old_handler = None
        self._early_stopping = early_stopping

    # SIGTERM: flag only (the handler runs between Python bytecodes); save at the next batch end.
    def _on_sigterm(self, signum, frame):
        self._sigterm.set()

    def on_train_begin(self, logs=None):
        self._sigterm.clear()
        self.preempted = False
        try:
            self._old_handler = signal.signal(signal.SIGTERM, self._on_sigterm)
        except ValueError:  # not the main thread (e.g. some notebook runners): no SIGTERM hook
            self._old_handler = None
        if self.resume is not None:
            self._restore_callbacks(self.resume)

    def on_train_end(self, logs=None):
        if not self.preempted and self.global_step not in self.saved and self.global_step > 0:
            self.save()
        if self._old_handler is not None:
            signal.signal(signal.SIGTERM, self._old_handler)
            self._old_handler = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.resume is not None and epoch == self.resume.state["epoch"] and self.resume.state.get("metrics"):
            # Keras reset the running metrics at epoch begin; put back the partial-epoch accumulators.
            self._assign_metrics(self.resume.state["metrics"])

    def on_epoch_end(self, epoch, logs=None):
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(float(v))

    def on_train_batch_end(self, batch, logs=None):
        # Keras passes the index of the last step done in this epoch (steps_per_execution may run several
        # steps per call, and a resumed epoch starts at its saved step), so derive the global step from it.
        before = self.global_step
        self.global_step = self.epoch * self.steps_per_epoch + int(batch) + 1
        if self._sigterm.is_set():
            self.save()
            self.preempted = True
            self.model.stop_training = True
            return
        if self.every and self.global_step // self.every > before // self.every:
            self.save()

    # -- state ----------------------------------------------------------------------------------
    def _metric_values(self) -> Dict[str, List[Any]]:
        out = {}
        for m in self.model.metrics:
            out[m.name] = [np.asarray(v.numpy()).tolist() for v in m.variables]
        return out

    def _assign_metrics(self, saved: Dict[str, List[Any]]):
        for m in self.model.metrics:
            if m.name in saved and len(saved[m.name]) == len(m.variables):
                for var, val in zip(m.variables, saved[m.name]):
                    var.assign(np.asarray(val, dtype=var.dtype.as_numpy_dtype))

    def restore_states(self, point: ResumePoint):
        """Callback states (privacy ledger, ...): called before ``fit`` so their ``on_train_begin`` sees them."""
        states = point.state.get("callbacks", {})
        missing = sorted(set(self.stateful) - set(states))
        if missing:
            raise CheckpointError(f"Incompatible checkpoint {str(point.path)!r}: it has no state for {missing} "
                                  "(was it written by a run with other concerns?)")
        for key, cb in self.stateful.items():
            cb.set_state(states[key])

    def _restore_callbacks(self, point: ResumePoint):
        es_state = point.state.get("early_stopping")
        es = self._early_stopping
        if es is not None and es_state:
            es.wait, es.stopped_epoch = int(es_state["wait"]), int(es_state["stopped_epoch"])
            es.best, es.best_epoch = float(es_state["best"]), int(es_state["best_epoch"])
            npz = point.path / "early_stopping.npz"
            if npz.exists():
                with np.load(npz) as f:
                    es.best_weights = [f[f"w{i}"] for i in range(len(f.files))]

    def save(self) -> Optional[Path]:
        """Write a complete checkpoint for the current step (temp folder + rename)."""
        step = self.global_step
        epoch, in_epoch = divmod(step, self.steps_per_epoch) if self.steps_per_epoch else (self.epoch, 0)
        state = {
            "format": FORMAT_VERSION, "global_step": step, "epoch": int(epoch), "step_in_epoch": int(in_epoch),
            "steps_per_epoch": int(self.steps_per_epoch), "config": self.config_digest,
            "signature": _signature(self.model.variables),
            "metrics": self._metric_values() if in_epoch else {},
            "history": self.history,
            "callbacks": {k: cb.get_state() for k, cb in self.stateful.items()},
        }
        es = self._early_stopping
        if es is not None:
            state["early_stopping"] = {"wait": int(es.wait), "stopped_epoch": int(es.stopped_epoch),
                                       "best": float(es.best), "best_epoch": int(getattr(es, "best_epoch", 0))}

        def fill(tmp: Path) -> bool:
            self.ckpt.write(str(tmp / "ckpt"))
            if not self.write:
                return False
            if es is not None and es.best_weights is not None:
                np.savez(tmp / "early_stopping.npz", **{f"w{i}": w for i, w in enumerate(es.best_weights)})
            return True

        final = write_step(self.root, step, state, self.config_yaml, fill)
        if final is not None:
            self.saved.append(step)
        return final


def write_step(root: Path, step: int, state: dict, config_yaml: str, fill) -> Optional[Path]:
    """Write checkpoint ``step-<step>`` under ``root`` (centralized steps and federated rounds alike).

    The working dir holds the secret DP seeds (``state.json``): owner-only dirs (0700) and files (0600).
    ``config.yaml`` is written once beside ``root``; ``fill(tmp)`` writes the payload into a temporary dir and
    returns False to discard it. Then ``state.json``, an atomic rename, ``latest``, and only the last
    :data:`KEEP` steps are kept. Returns the step's dir, or None if discarded.
    """
    for d in (root.parent, root):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(d, 0o700)
    if config_yaml and not (root.parent / "config.yaml").exists():
        _atomic_write_text(root.parent / "config.yaml", config_yaml)
    name = f"step-{step:08d}"
    tmp = root / f".tmp-{name}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir(mode=0o700)
    if not fill(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    _atomic_write_text(tmp / "state.json", json.dumps(state, default=_json_default), mode=0o600)
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    _atomic_write_text(root / "latest", name + "\n")
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (tf.Tensor, tf.Variable)):
        return np.asarray(obj.numpy()).tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable in a checkpoint state")


# -- what the builder calls ----------------------------------------------------------------------
class FitPlan:
    """Everything ``builder.train`` needs to run ``fit`` resumably."""

    def __init__(self, dataset, fit_kwargs: dict, saver: CheckpointSaver):
        self.dataset, self.fit_kwargs, self.saver = dataset, fit_kwargs, saver

    def finish(self, history: dict) -> dict:
        """The whole run's history (epochs before the resume included); raises :class:`Preempted`."""
        if self.saver.preempted:
            raise Preempted(f"training stopped by SIGTERM at step {self.saver.global_step}; checkpoint saved in "
                            f"{self.saver.root}; rerun the same command with --resume to continue")
        return self.saver.history if self.saver.history else history


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type in (None, "chief") or (task_type == "worker" and task_id == 0
                                           and "chief" not in resolver.cluster_spec().as_dict())


def prepare_fit(ctx, train_ds, callbacks: list, target: Optional[Path], resume: Optional[ResumePoint]) -> FitPlan:
    """Attach checkpointing to a compiled ``ctx.model``; restore ``resume`` into it.

    Call inside ``strategy.scope()`` after ``compile``, with the training dataset and the other
    callbacks built; append ``plan.saver`` last to the callbacks (it must see their final state).
    """
    cfg = ctx.config
    model, optimizer = ctx.model, ctx.model.optimizer
    skip = resume.global_step if resume else 0
    dataset, steps = epoch_pipeline(train_ds, cfg.train.epochs, ctx.steps_per_epoch, skip)
    try:
        optimizer.build(model.core.trainable_variables)
    except Exception:  # optimizers that build lazily (wrapped DP optimizers): restore is deferred
        pass
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer)
    digest = _config_digest(cfg.to_dict())
    history = None
    if resume is not None:
        if resume.state["steps_per_epoch"] != steps:
            raise CheckpointError(f"Incompatible checkpoint {str(resume.path)!r}: written with "
                                  f"{resume.state['steps_per_epoch']} steps per epoch, this run has {steps}")
        saved_sig = [tuple(map(str, s[:1])) + (tuple(s[1]),) for s in resume.state["signature"]]
        now_sig = [tuple(map(str, s[:1])) + (tuple(s[1]),) for s in _signature(model.variables)]
        if [s[1] for s in saved_sig] != [s[1] for s in now_sig]:
            diff = next((a, b) for a, b in zip(saved_sig + [("<none>", ())], now_sig + [("<none>", ())]) if a != b)
            raise CheckpointError(f"Incompatible checkpoint {str(resume.path)!r}: model variables differ "
                                  f"(checkpoint has {diff[0][0]} {list(diff[0][1])}, model has "
                                  f"{diff[1][0]} {list(diff[1][1])})")
        try:
            status = ckpt.read(str(resume.path / "ckpt"))
            status.assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError, IndexError, RuntimeError) as exc:
            first = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
            raise CheckpointError(f"Incompatible checkpoint {str(resume.path)!r}: cannot restore it into this "
                                  f"model ({first}); it was left untouched") from None
        model._training_state = _ResumePosition(resume.state["epoch"], resume.state["step_in_epoch"])
        history = resume.state.get("history") or {}
        log.info("tfresp: resuming from %s (epoch %d, step %d)", resume.path, resume.state["epoch"],
                 resume.state["step_in_epoch"])
    chief = _is_chief(ctx.strategy)
    if target is None:  # train() called outside build_and_run: checkpoints inside the run dir
        root = Path(ctx.run_dir) / "checkpoints"
    else:
        root = _ckpt_root(target)
    root = root if chief else Path(os.environ.get("TMPDIR", "/tmp")) / f"tfresp-ckpt-{uuid.uuid4().hex}"
    saver = CheckpointSaver(root, ckpt, cfg.train.checkpoint_every, steps, digest,
                            _stateful_callbacks(callbacks), resume=resume, history=history, write=chief,
                            config_yaml=cfg.to_yaml(),
                            early_stopping=next((c for c in callbacks
                                                 if isinstance(c, keras.callbacks.EarlyStopping)), None))
    if resume is not None and not ctx.callback_states_restored:
        saver.restore_states(resume)
    fit_kwargs = {"steps_per_epoch": steps, "initial_epoch": resume.state["epoch"] if resume else 0}
    from tfresp.distribute import batch_sizes

    extra = ctx.training_extra
    extra.update(batch_sizes(ctx.strategy, cfg.train.batch_size))
    extra["steps_per_epoch"] = steps
    extra["checkpointing"] = {"every": cfg.train.checkpoint_every, "resumed_from_step": skip if resume else None,
                              "resumed_from_epoch": resume.state["epoch"] if resume else None}
    return FitPlan(dataset, fit_kwargs, saver)


def restore_states(ctx) -> None:
    """On resume, restore every ``get_state``/``set_state`` callback of the concerns (privacy ledger, with its
    secret seeds) *before* the training pipeline is built, so a pipeline seeded from that state (Poisson
    sampling) continues exactly where the interrupted run was."""
    point = ctx.resume_point
    if point is None:
        return
    states = point.state.get("callbacks", {})
    for key, cb in _stateful_callbacks(ctx.callbacks).items():
        if key not in states:
            raise CheckpointError(f"Incompatible checkpoint {str(point.path)!r}: it has no state for {key!r} "
                                  "(was it written by a run with other concerns?)")
        cb.set_state(states[key])
    ctx.callback_states_restored = True


def scrub_secrets(state_file: Path) -> None:
    """Drop the keys each callback state lists under ``secret_keys`` (e.g. the DP noise seed) from a state.json.

    A finished run directory is shared (reports, exports); a secret left in it would let its holder subtract
    the DP noise. Only the private working directory, which ``--resume`` reads, keeps them.
    """
    state = json.loads(state_file.read_text())
    for cb_state in (state.get("callbacks") or {}).values():
        if isinstance(cb_state, dict):
            for key in cb_state.pop("secret_keys", []):
                cb_state.pop(key, None)
    _atomic_write_text(state_file, json.dumps(state, default=_json_default))


def move_into_run(target: Path, stage: Path) -> None:
    """On success: move the working directory's checkpoints into the staged run dir (secrets scrubbed)."""
    wd = work_dir(target)
    src = wd / "checkpoints"
    if src.is_dir():
        for tmp in src.glob(".tmp-*"):
            shutil.rmtree(tmp, ignore_errors=True)
        for state_file in src.glob("*/state.json"):
            scrub_secrets(state_file)
            os.chmod(state_file.parent, 0o755)  # secrets gone: the shared run dir gets ordinary modes
        os.chmod(src, 0o755)
        dst = stage / "checkpoints"
        if dst.exists():
            shutil.rmtree(dst)
        os.rename(src, dst)


def cleanup(target: Path) -> None:
    """Remove the working directory after the run directory was committed."""
    shutil.rmtree(work_dir(target), ignore_errors=True)


def variables_digest(ckpt_prefix: str) -> str:
    """sha256 over every variable of a checkpoint (to compare runs)."""
    reader = tf.train.load_checkpoint(ckpt_prefix)
    h = hashlib.sha256()
    for name in sorted(reader.get_variable_to_shape_map()):
        h.update(name.encode())
        h.update(np.asarray(reader.get_tensor(name)).tobytes())
    return h.hexdigest()


# -- after a failed run --------------------------------------------------------------------------
def latest_marker(target: Path):
    """``(mtime_ns, text)`` of the working directory's ``latest`` checkpoint pointer, or None."""
    latest = _ckpt_root(target) / "latest"
    try:
        return latest.stat().st_mtime_ns, latest.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def after_failure(target: Path, before, exc: BaseException) -> None:
    """Clean up after a failed run: keep only what ``--resume`` needs, and say so.

    A working directory without a checkpoint (a failure before the first step) holds nothing resumable but may
    hold secrets (the DP noise seed): it is removed. One with a checkpoint written by this run is kept, and a
    note on stderr says how to resume or discard it (a SIGTERM's own message already says it).
    """
    import sys

    wd = work_dir(target)
    if wd.is_symlink() or not wd.is_dir():
        return
    now = latest_marker(target)
    if now is None or getattr(exc, "discard_checkpoints", False):  # nothing resumable (e.g. a NaN loss)
        shutil.rmtree(wd, ignore_errors=True)
        return
    if now != before and not isinstance(exc, Preempted):
        print(f"tfresp: note: the failed run's checkpoints are kept in {wd}; rerun the same command with "
              "--resume to continue from the last one, or with --overwrite to discard them", file=sys.stderr)
