"""The builder: composes a tfresp run from its config (the stages, each with its owner).

Stages of a run: config -> privacy budget -> data -> strategy -> core model -> model (the task hook's or a
``ResponsibleModel``) -> provide / validate / set up -> plan (fixed slots, see :mod:`tfresp.concerns`; the gradient
transform (privacy) plans last so every loss term is inside per-example clipping) -> train (``model.fit`` or a
contributed trainer: federated rounds) -> predictions -> post-fit (each concern's ``post_fit``, TFLite conversion)
-> audits (topological order of ``audit_after``; each returns its own section) -> export -> report -> gates.
The context itself is made by :func:`tfresp.run.context.compose`, shared with re-audits of a finished run.

Everything is written into a staging directory that becomes the run directory only on success.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfresp.run import checkpointing, rundir
from tfresp._quiet import progress
from tfresp import concerns as concern_registry
from tfresp.concerns import Contribution
from tfresp.run.context import RunContext, ServingPlan, TextParts, compose, provide  # noqa: F401  (RunContext's home was here)
from tfresp.data.dataset import make_dataset, prepare
from tfresp.data.stream import release_memory
from tfresp.run.distribute import pick_strategy
from tfresp.errors import ConfigError
from tfresp.models.base import ResponsibleModel
from tfresp.models.registry import build_core
from tfresp.privacy.budget import make_budget
from tfresp.run.training import EpochTensorBoard, class_weights, make_optimizer

log = logging.getLogger("tfresp")


@dataclasses.dataclass
class RunResult:
    """What :func:`tfresp.fit` returns."""

    model: keras.Model
    history: Dict[str, list]
    metrics: Dict[str, Any]
    report: Dict[str, Any]
    run_dir: Path
    paths: Dict[str, str]
    context: Any = None


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # already enabled / unsupported backend: determinism stays best-effort
        pass


def _apply(ctx: RunContext, name: str, contrib: Contribution, model: ResponsibleModel) -> None:
    for fn in contrib.per_example_losses:
        model.per_example_losses.append(fn)
    for fn in contrib.batch_losses:
        model.batch_losses.append(fn)
    for attr in ("input_transform", "gradient_fn"):
        fn = getattr(contrib, attr)
        if fn is not None:
            if getattr(model, attr) is not None:
                raise ConfigError([(name, attr, f"two concerns both set {attr}; they cannot be combined")])
            setattr(model, attr, fn)
    if contrib.trainer is not None and _trainer(ctx, exclude=name) is not None:
        raise ConfigError([(name, "trainer", "two concerns both replace model.fit; they cannot be combined")])
    if contrib.sample_weight is not None:
        w = ctx.train_extras.get("sample_weight", np.ones(len(ctx.data.train), np.float32))
        ctx.train_extras["sample_weight"] = (w * np.asarray(contrib.sample_weight, np.float32)).astype(np.float32)
    ctx.callbacks.extend(contrib.callbacks)


def _trainer(ctx: RunContext, exclude: str = None):
    """The contributed trainer that replaces ``model.fit`` (federated rounds), or None."""
    return next((c.trainer for k, c in ctx.contributions.items() if c.trainer is not None and k != exclude), None)


def _train_dataset(ctx: RunContext):
    for contrib in ctx.contributions.values():
        if contrib.train_dataset is not None:
            return contrib.train_dataset(ctx)
    cfg = ctx.config
    return make_dataset(ctx.data.train.x, ctx.data.train.y, ctx.train_extras, cfg.train.batch_size,
                        shuffle=True, seed=cfg.seed)


def _standard_callbacks(ctx: RunContext) -> list:
    from tfresp.run.non_finite_loss import NonFiniteLossStop

    cbs = [NonFiniteLossStop(), EpochTensorBoard(str(ctx.run_dir / "tensorboard"))]
    es = ctx.config.train.early_stopping
    if es and ctx.data.validation is not None:
        cbs.append(keras.callbacks.EarlyStopping(monitor=ctx.config.train.early_stopping_monitor, patience=es,
                                                 restore_best_weights=True))
    return cbs


def make_model(ctx: RunContext) -> keras.Model:
    """The training model around ``ctx.core``: the task hook's (masked-LM) or a :class:`ResponsibleModel`."""
    for hook in concern_registry.hooks():
        if hook.enabled(ctx.config):
            model = hook.make_model(ctx)
            if model is not None:
                return model
    return ResponsibleModel(ctx.core)


def plan(ctx: RunContext) -> List[Any]:
    """Provide, validate, set up (task/model hooks) and ask for every contribution (slot order); return what
    is active (enabled hooks and concerns)."""
    active = provide(ctx)
    for c in active:
        c.validate(ctx)
    for c in active:
        if isinstance(c, concern_registry.Hook):
            c.setup(ctx)
    for c in concern_registry.plan_order(active):
        contrib = c.plan(ctx) or Contribution()
        if contrib.wrap_core is not None:
            ctx.core = contrib.wrap_core(ctx.core, ctx)
            ctx.model.core = ctx.core
        ctx.contributions[c.config_key] = contrib
        _apply(ctx, c.config_key, contrib, ctx.model)
    return active


def train(ctx: RunContext) -> None:
    cfg = ctx.config
    trainer = _trainer(ctx)
    if trainer is not None:  # a concern's trainer replaces model.fit (federated rounds on clients)
        t0, c0 = time.perf_counter(), time.process_time()
        trainer(ctx)
        ctx.timings["fit_seconds"] = time.perf_counter() - t0
        ctx.timings["fit_cpu_seconds"] = time.process_time() - c0
        return
    if cfg.train.class_weight == "balanced":
        w = ctx.train_extras.get("sample_weight", np.ones(len(ctx.data.train), np.float32))
        if ctx.budget is not None and "class_counts" not in ctx.data.extra:
            raise ConfigError([("train.class_weight", "balanced", "under privacy, class weights need the DP class "
                                "counts, which are not released when the classes are declared in data.categories "
                                "(or for text/image data); Remedy: drop train.class_weight or the declaration")])
        ctx.train_extras["sample_weight"] = w * class_weights(ctx.data.train.y, ctx.data.num_classes,
                                                              counts=ctx.data.extra.get("class_counts"))
    from tfresp.models.user import compiled_optimizer  # a user's model keeps the optimizer of its own compile

    optimizer = compiled_optimizer(ctx.model_extra) or make_optimizer(cfg.train, ctx.steps_per_epoch)
    for contrib in ctx.contributions.values():
        if contrib.optimizer is not None:
            optimizer = contrib.optimizer(optimizer, ctx)
    jit = cfg.train.jit_compile
    if jit == "auto":
        jit = bool(tf.config.list_logical_devices("GPU")) and ctx.model.gradient_fn is None
    ctx.model.compile(optimizer=optimizer, weighted_metrics=[], jit_compile=jit, steps_per_execution=cfg.train.steps_per_execution)
    checkpointing.restore_states(ctx)  # on --resume: ledger state (incl. its seeds) before the pipeline is built
    train_ds = _train_dataset(ctx)
    val_ds = None
    if ctx.data.validation is not None:
        val_ds = make_dataset(ctx.data.validation.x, ctx.data.validation.y, {}, max(cfg.train.batch_size, 512),
                              shuffle=False, seed=cfg.seed)
    callbacks = _standard_callbacks(ctx) + ctx.callbacks
    # Step checkpoints + SIGTERM + exact resume (tfresp/run/checkpointing.py); the saver goes last.
    fit_plan = checkpointing.prepare_fit(ctx, train_ds, callbacks, ctx.target, ctx.resume_point)
    callbacks.append(fit_plan.saver)
    t0, c0 = time.perf_counter(), time.process_time()
    hist = ctx.model.fit(fit_plan.dataset, validation_data=val_ds, epochs=cfg.train.epochs, callbacks=callbacks,
                         verbose=0 if ctx.quiet else "auto", **fit_plan.fit_kwargs)
    ctx.timings["fit_seconds"] = time.perf_counter() - t0
    ctx.timings["fit_cpu_seconds"] = time.process_time() - c0
    ctx.history = {k: [float(v) for v in vals] for k, vals in fit_plan.finish(hist.history).items()}


def post_fit(ctx: RunContext, active) -> None:
    """After training, before any audit: every concern's ``post_fit`` (strip pruning wrappers, fit group thresholds,
    merge LoRA) in audit order, then the TFLite conversion of ``export.tflite`` (classification runs)."""
    t0 = time.perf_counter()
    for c in concern_registry.audit_order(active):
        c.post_fit(ctx)
    if ctx.config.export.tflite and ctx.config.task == "classification":
        from tfresp.export.tflite import export_tflite

        progress(ctx.quiet, f"export TFLite ({', '.join(ctx.config.export.tflite)}) ...")
        export_tflite(ctx, ctx.config.export.tflite)
    release_memory()  # the stage's whole-split temporaries go back to the system before the audits add theirs
    ctx.timings["post_fit_seconds"] = time.perf_counter() - t0


def audit(ctx: RunContext, active) -> None:
    for c in concern_registry.audit_order(active):
        progress(ctx.quiet, f"audit {c.config_key} ...")
        t0 = time.perf_counter()
        section = c.audit(ctx)
        release_memory()  # each audit's temporaries go back to the system: the next one starts from the same floor
        ctx.timings[f"audit_{c.config_key}_seconds"] = time.perf_counter() - t0
        if section is not None:
            ctx.report[c.report_key or c.config_key] = section


def build_and_run(config, *, out=None, overwrite: bool = False, quiet: bool = False, memory=None,
                  resume: bool = False, model=None) -> RunResult:
    """Run a whole tfresp job for a validated :class:`~tfresp.config.RunConfig`.

    ``model``: the user's ``keras.Model`` or builder ``fn(input_spec)`` (``model.kind: keras``).

    The target is locked for the whole run (a second run on it is refused); a run that fails leaves only
    the checkpoints ``--resume`` needs (see :func:`tfresp.run.checkpointing.after_failure`).
    """
    target = rundir.resolve_out(out if out is not None else config.out, config.name)
    if config.federated is not None and config.federated.sites:  # cross-silo: no central data at all
        from tfresp.federated.sites_run import run_sites

        if memory is not None or model is not None:
            raise ConfigError([("data" if memory is not None else "model", "given", "a sites run reads only the "
                                "sites' files (federated.sites) and builds the model from the declared schema. "
                                "Remedy: pass neither data= nor model=")])
        return RunResult(**run_sites(config, target, overwrite=overwrite, quiet=quiet, resume=resume))
    with rundir.locked(target) as run_id:
        before = checkpointing.latest_marker(target)
        try:
            return _build_and_run(config, target, run_id, overwrite=overwrite, quiet=quiet, memory=memory,
                                  resume=resume, model=model)
        except BaseException as exc:
            checkpointing.after_failure(target, before, exc)
            raise


def _build_and_run(config, target, run_id, *, overwrite, quiet, memory, resume, model=None) -> RunResult:
    from tfresp.export.saved_model import export_saved_model
    from tfresp.report.writer import finalize_report

    rundir.check_target(target, overwrite, resume, protect=[config.data.source])
    # Before any TF op: MultiWorkerMirroredStrategy must configure collectives at program start.
    strategy, sname = pick_strategy(config.distribute)
    resume_point = checkpointing.check_resume(target, config, resume, overwrite)
    set_seed(config.seed)
    t_start = time.perf_counter()
    budget = make_budget(config)
    if budget is not None and sname == "multi_worker":  # every worker: the same secret DP seeds
        from tfresp.run.distribute import shared_secret

        root = shared_secret(strategy)
        if root is not None:
            budget.share_secret(root)
    restored = None
    if budget is not None and resume_point is not None:  # reuse the DP preprocessing in the checkpoint
        from tfresp.data import dp_resume

        restored = dp_resume.restore(resume_point, budget)
    data = prepare(config, memory=memory, budget=None if restored else budget,
                   preprocessor=restored[0] if restored else None, compact=True)
    if restored:
        data.extra.update(restored[1])
    from tfresp.tasks import recipe  # train.recipe: auto (text fine-tuning): size-based defaults, into config

    recipe.apply(config, data)
    if config.train.batch_size > len(data.train):
        raise ConfigError([("train.batch_size", config.train.batch_size,
                            f"must not exceed the {len(data.train)} training rows (after the validation split)")])
    stage = rundir.staging_dir(target, run_id)
    try:
        ctx = compose(config, data, stage, strategy=strategy, strategy_name=sname, quiet=quiet, budget=budget,
                      target=target, resume_point=resume_point)
        if budget is not None:
            from tfresp.data.dp_resume import PreprocessingState

            ctx.callbacks.append(PreprocessingState(data, budget))
        with strategy.scope():
            if model is not None:
                from tfresp.models.registry import build_user_core

                ctx.core, ctx.model_extra = build_user_core(config, data, model)
            else:
                ctx.core = build_core(config, data)
            ctx.model = make_model(ctx)
            active = plan(ctx)
            train(ctx)
        release_memory()  # training's temporaries (batches, the pipeline) go back to the system
        if config.task == "classification":
            ctx.predict_splits()
        post_fit(ctx, active)
        audit(ctx, active)
        if config.export.saved_model and config.task == "classification":
            progress(quiet, "export SavedModel ...")
            export_saved_model(ctx)
        from tfresp.export import tflite

        tflite.record(ctx)
        if config.export.saved_model and config.task == "classification":
            from tfresp.monitoring.profile import write_reference

            write_reference(ctx)  # RUN/monitor/reference.json: what `tfresp monitor` compares new batches with
        ctx.timings["total_seconds"] = time.perf_counter() - t_start
        progress(quiet, "report ...")
        report = finalize_report(ctx)
        checkpointing.move_into_run(target, stage)
        final = rundir.commit(stage, target, overwrite)
        checkpointing.cleanup(target)
    except BaseException:
        rundir.discard(stage)
        raise
    paths = {k: str(final / v) for k, v in ctx.artifacts.items()}
    from tfresp.evaluation.served import raw_metrics, served_metrics

    metrics = dict(served_metrics(report))  # the model as served (post-processing included), raw beside it
    if raw_metrics(report) is not None:
        metrics["raw_model"] = raw_metrics(report)
    return RunResult(model=ctx.core, history=ctx.history, metrics=metrics, report=report, run_dir=final,
                     paths=paths, context=ctx)
