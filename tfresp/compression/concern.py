"""The compression concern: pruning (tfmot or masks), QAT, TFLite variants, distillation.

Plan (registration order: after the fairness/robustness loss terms; privacy plans last):

* ``prune``/``structured``: Functional/Sequential cores get tfmot ``prune_low_magnitude``
  wrappers (``wrap_core``) + ``UpdatePruningStep``; subclassed cores, runs with DP (per-layer
  clipping registries do not know the wrappers) and QAT runs get the mask-based
  :class:`~tfresp.compression.pruning_scheduler.PruningScheduler`. Both act after the
  optimizer step, so they compose with DP-SGD (masking is post-processing).
* ``quantize: qat``: tfmot quantization-aware training wrappers on supported layers
  (unsupported layers stay float and are listed by name).
* Post-fit (after training, before any audit) the pruning wrappers are stripped from ``ctx.core`` so every
  audit, the SavedModel and the TFLite export see the plain, sparse model; the TFLite variants are converted.

Audit: per-layer and global sparsity (2:4 verified on every group of four), the Keras model
and every TFLite variant re-scored on the test split (accuracy, demographic-parity gap per
sensitive attribute), sizes (bytes, gzip), parameters and CPU latency p50/p95; plus the
distilled student if asked.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfresp.concerns import Concern, Contribution, register
from tfresp.compression.measure import weights_bytes
from tfresp.compression.state import CompressionState
from tfresp.compression.student import PRIVATE_DISTILL_REFUSAL, distill_text, register_student, validate_text
from tfresp.errors import ConfigError, DataError, IncompatibleModelError

log = logging.getLogger("tfresp")

DP_DISTILL_RULE = ("A student distilled from a DP teacher keeps the teacher's (epsilon, delta) only if the student "
                   "is trained on public/unlabeled data with alpha=0 (post-processing); training it on the private "
                   "training rows is not covered by the teacher's guarantee.")


def keras_latency(core, x, runs: int):
    from tfresp.compression.measure import latency_ms, take_rows

    fn = tf.function(lambda z: core(z, training=False))
    one = take_rows(x, slice(0, 1))
    return latency_ms(lambda z: fn(z), tf.nest.map_structure(tf.constant, one), runs=runs)


def describe_model(core, data, runs: int, reference_proba=None) -> dict:
    """Accuracy, group gap, parameters, sparsity, bytes and latency of a Keras core."""
    from tfresp.compression.measure import gzip_size, scores
    from tfresp.compression.pruning_scheduler import kernel_sparsity

    from tfresp.run.context import predict_proba

    proba = reference_proba if reference_proba is not None else predict_proba(core, data.test.x)
    out = {"format": "keras"}
    out.update(scores(data.test.y, proba, data.test.groups, data.num_classes))
    sp = kernel_sparsity(core)
    params = int(sum(int(np.prod(v.shape)) for v in core.weights))
    nz = int(sum(int(np.count_nonzero(v.numpy())) for v in core.weights))
    raw = weights_bytes(core)
    out.update({"parameters": params, "nonzero_parameters": nz, "sparsity": sp["global"],
                "per_layer_sparsity": sp["per_layer"], "bytes": len(raw), "gzip_bytes": gzip_size(raw)})
    out.update(keras_latency(core, data.test.x, runs))
    return out


def structured_check(core, pruned, n: int = 2, m: int = 4) -> dict:
    """For each pruned kernel: does every group of ``m`` input weights have at most ``n`` non-zeros?"""
    from tfresp.compression.masks import check_nm
    from tfresp.compression.pruning_scheduler import is_kernel

    out = {}
    for v in core.weights:
        name = v.name.replace(":0", "")
        if is_kernel(v) and any(p == name or p in name.split("/") for p in pruned):
            out[name] = check_nm(v.numpy(), n, m)
    return out


@register
class Compression(Concern):
    config_key = "compression"
    State = CompressionState
    example = {"compression": {"prune": 0.5, "latency_runs": 5, "representative_rows": 20}}

    # -- before fit -----------------------------------------------------------------------
    def _pruning_on(self, cfg) -> bool:
        return bool(cfg.prune) or cfg.structured is not None

    def _method(self, ctx) -> str:
        from tfresp.compression import _tfmot

        cfg = ctx.config.compression
        if cfg.method != "auto":
            return cfg.method
        if not _tfmot.is_graph_model(ctx.core) or ctx.config.privacy is not None or cfg.quantize == "qat":
            return "mask"
        if cfg.structured and self._nm_incompatible(ctx):
            return "mask"  # tfmot's m_by_n needs input dims divisible by 4; the masks zero-pad instead
        return "tfmot"

    @staticmethod
    def _nm_incompatible(ctx):
        from tfresp.compression.masks import name_selected, nm_applicable
        from tfresp.compression.pruning_scheduler import is_kernel

        cfg = ctx.config.compression
        return [v.name for v in ctx.core.trainable_variables if is_kernel(v) and not nm_applicable(v.shape)
                and name_selected(v.name, cfg.include, cfg.exclude)]

    def validate(self, ctx) -> None:
        from tfresp.compression import _tfmot

        cfg = ctx.config.compression
        problems = []
        if cfg.structured and cfg.prune not in (None, 0.5):
            problems.append(("compression.prune", cfg.prune,
                             "2:4 structured sparsity fixes sparsity at 0.5; leave prune unset (or 0.5)"))
        if self._pruning_on(cfg) and cfg.method == "tfmot" and cfg.quantize == "qat":
            problems.append(("compression.method", cfg.method, "pruning together with QAT uses the mask-based "
                             "PruningScheduler; set method: auto or mask"))
        if cfg.quantize == "qat" and ctx.config.privacy is not None:
            problems.append(("compression.quantize", "qat", "QAT cannot run under privacy: its fake-quant layers "
                             "update min/max statistics inside the forward pass, which DP-SGD's vectorized "
                             "per-example gradients cannot trace. Use quantize: dynamic or float16 (post-processing, "
                             "covered by epsilon) or int8 with compression.calibration set to public rows"))
        if self._pruning_on(cfg) and cfg.method == "tfmot" and ctx.config.privacy is not None:
            problems.append(("compression.method", cfg.method, "tfmot pruning wrappers re-mask weights inside the "
                             "forward pass, which DP-SGD's per-example gradients cannot trace; set method: auto or "
                             "mask (PruningScheduler masks after each private step)"))
        if cfg.calibration != "train" and not Path(cfg.calibration).is_file():
            problems.append(("compression.calibration", cfg.calibration,
                             "'train' or the path of an existing CSV/parquet file of public rows"))
        d = cfg.distill
        if d is not None and ctx.data.kind == "text":
            validate_text(ctx, d, problems)
        if d is not None:
            if d.data == "train" and ctx.config.privacy is not None:
                problems.append(("compression.distill.data", d.data, DP_DISTILL_RULE + " " + PRIVATE_DISTILL_REFUSAL +
                                 " Point distill.data at a public CSV/parquet file and set alpha: 0"))
            if ctx.data.kind != "text" and (d.layers or d.teacher_layers or d.export):
                problems.append(("compression.distill.layers", d.layers or d.teacher_layers or d.export,
                                 "unset: layers, teacher_layers and export shape BERT students (text runs); "
                                 "tabular students are MLPs shaped by hidden"))
            if d.data != "train":
                if not Path(d.data).is_file():
                    problems.append(("compression.distill.data", d.data,
                                     "'train' or the path of an existing CSV/parquet file of public rows"))
                if d.alpha != 0:
                    problems.append(("compression.distill.alpha", d.alpha,
                                     "0 when distilling on public unlabeled data (there are no labels)"))
        if problems:
            raise ConfigError(problems)
        graph = _tfmot.is_graph_model(ctx.core)
        if not graph and (cfg.quantize == "qat" or cfg.method == "tfmot"):
            what = "quantize: qat" if cfg.quantize == "qat" else "method: tfmot"
            raise IncompatibleModelError(
                f"compression.{what} needs a Sequential/Functional model, but the core "
                f"{ctx.core.name!r} is a subclassed {ctx.core.__class__.__name__}. Remedy: use "
                "compression.quantize: int8 (post-training) and compression.method: mask (PruningScheduler).")
        if d is not None and ctx.data.kind not in ("tabular", "text"):
            raise IncompatibleModelError(
                f"compression.distill builds an MLP student (tabular) or a BERT student (text), but model "
                f"{ctx.core.name!r} is trained on "
                f"{ctx.data.kind} data. Remedy: remove compression.distill or distill with "
                "tfresp.compression.distiller.Distiller and your own student.")

    def plan(self, ctx) -> Contribution:
        from tfresp.compression import _tfmot
        from tfresp.compression.pruning_scheduler import PruningScheduler
        from tfresp.compression.schedule import make_schedule

        cfg = ctx.config.compression
        contrib = Contribution()
        state = ctx.own(self)
        total_steps = ctx.steps_per_epoch * ctx.config.train.epochs
        structured = (2, 4) if cfg.structured == "2:4" else None
        target = 0.5 if structured else float(cfg.prune or 0.0)
        pruning = self._pruning_on(cfg)
        method = self._method(ctx) if pruning else None
        schedule = make_schedule(cfg, total_steps, target) if pruning else None
        state.method, state.schedule, state.structured, state.target = method, schedule, structured, target
        exclude = cfg.exclude

        def wrap(core, ctx_):
            if cfg.quantize == "qat":
                core, quantized, unsupported = _tfmot.quantize_aware(core)
                state.qat = {"quantized_layers": quantized,
                                "unsupported_layers": [{"layer": n, "class": c} for n, c in unsupported]}
                for n, c in unsupported:
                    log.warning("tfresp: QAT does not support layer %r (%s); it stays float", n, c)
            if method == "tfmot":
                core, wrapped, skipped = _tfmot.prune(core, schedule, structured=structured,
                                                      include=cfg.include, exclude=exclude)
                state.pruned_layers = wrapped
                state.skipped_layers = [{"layer": n, "reason": r} for n, r in skipped]
            return core

        if cfg.quantize == "qat" or method == "tfmot":
            contrib.wrap_core = wrap
        if method == "tfmot":
            contrib.callbacks.append(_tfmot.update_step_callback())
            contrib.notes.append(f"compression: tfmot prune_low_magnitude to {target:.0%} sparsity "
                                 f"({'2:4' if structured else cfg.schedule})")
        elif method == "mask":
            sched_cb = PruningScheduler(schedule, structured=structured, include=cfg.include, exclude=exclude)
            state.scheduler = sched_cb
            contrib.callbacks.append(sched_cb)
            contrib.notes.append(f"compression: mask-based PruningScheduler to {target:.0%} sparsity "
                                 f"({'2:4' if structured else cfg.schedule})")
        if cfg.quantize == "qat":
            contrib.notes.append("compression: quantization-aware training (tfmot default 8-bit scheme)")
        if ctx.config.privacy is not None and pruning:
            contrib.notes.append("compression: pruning masks are applied after each DP-SGD step (post-processing; "
                                 "no privacy cost)")
        return contrib

    # -- after fit ------------------------------------------------------------------------
    def post_fit(self, ctx) -> None:
        """Strip the pruning wrappers (every audit, the SavedModel and the TFLite export see the plain, sparse
        model), then convert the TFLite variants this section measures."""
        from tfresp.compression import _tfmot
        from tfresp.export.tflite import export_tflite

        cfg = ctx.config.compression
        stripped = _tfmot.strip(ctx.core)
        if stripped is not ctx.core:
            ctx.core = ctx.model.core = stripped
            ctx.own(self).stripped = True
        variants = list(ctx.config.export.tflite)
        if cfg.quantize in ("int8", "dynamic", "float16"):
            variants.append(cfg.quantize)
        if cfg.quantize == "qat":
            variants.append("int8")
        # the float TFLite reference is always exported, except in a distillation-only run (nothing else asked
        # for: converting a MiniLM teacher takes ~40 s for a file nobody requested)
        if variants or self._pruning_on(cfg) or cfg.distill is None:
            export_tflite(ctx, ["float"] + variants)

    def audit(self, ctx):
        cfg = ctx.config.compression
        state = ctx.own(self)
        section = {}
        sched = state.schedule
        section["pruning"] = None if sched is None else {
            "method": "tfmot.prune_low_magnitude" if state.method == "tfmot" else "PruningScheduler (masks)",
            "target_sparsity": state.target, "structured": cfg.structured,
            "schedule": "2:4 masks fixed from begin_step, refreshed every frequency steps" if cfg.structured
            else sched.kind,
            "begin_step": sched.begin_step, "end_step": sched.end_step, "frequency": sched.frequency,
            "include": cfg.include, "exclude": cfg.exclude}
        if sched is not None:
            if state.method == "tfmot":
                section["pruning"]["pruned_layers"] = state.pruned_layers
                section["pruning"]["skipped_layers"] = state.skipped_layers
            else:
                sc = state.scheduler
                section["pruning"]["pruned_layers"] = [k.name.replace(":0", "") for k in sc.kernels] if sc else []
                section["pruning"]["skipped_layers"] = [{"layer": n, "reason": r} for n, r in (sc.skipped if sc
                                                                                                  else [])]
        if state.qat is not None:
            section["qat"] = state.qat
        runs = cfg.latency_runs
        keras_res = describe_model(ctx.core, ctx.data, runs, ctx.predictions.get("test"))
        section["keras"] = keras_res
        section["sparsity"] = keras_res["sparsity"]
        section["per_layer_sparsity"] = keras_res["per_layer_sparsity"]
        if cfg.structured == "2:4":
            checks = structured_check(ctx.core, section["pruning"]["pruned_layers"])
            section["structured_2_4"] = {"per_layer": checks, "all_groups_ok": bool(checks) and all(checks.values())}
        if cfg.distill is not None:
            section["student"] = distill_text(ctx) if ctx.data.kind == "text" else self._distill(ctx)
            if ctx.budget is not None:
                register_student(ctx.budget, section["student"])
        section["privacy_rule"] = DP_DISTILL_RULE
        section["gap_metric"] = "fairlearn demographic_parity_difference of each variant's test predictions"
        section["latency_note"] = ("per-example (batch 1) wall clock in this process; TFLite with 1 thread "
                                   "(XNNPACK), Keras via tf.function")
        plot = self._plot(ctx, section)
        if plot:
            section["plots"] = [plot]
        return section

    def _distill(self, ctx) -> dict:
        import pandas as pd

        from tfresp.compression.distiller import Distiller
        from tfresp.data.dataset import make_dataset
        from tfresp.export.tflite import export_variant
        from tfresp.models.mlp import build_mlp

        cfg = ctx.config.compression.distill
        train = ctx.config.train
        if cfg.data == "train" and ctx.budget is not None:  # validate refuses it; no path may reach private rows
            raise ConfigError([("compression.distill.data", cfg.data, "public rows under privacy. " +
                                PRIVATE_DISTILL_REFUSAL)])
        keras.utils.set_random_seed(ctx.config.seed + 7)
        student = build_mlp(int(ctx.data.input_shape[0]), ctx.data.num_classes, cfg.hidden,
                            activation=ctx.config.model.activation, name="student")
        if cfg.data == "train":
            ds = make_dataset(ctx.data.train.x, ctx.data.train.y, {}, train.batch_size, shuffle=True,
                              seed=ctx.config.seed)
            source = "train (private rows, hard labels weighted by alpha)"
        else:
            path = Path(cfg.data)
            df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
            missing = [c for c in ctx.data.feature_columns if c not in df.columns]
            if missing:
                raise DataError(f"Invalid value for `compression.distill.data`: {str(path)!r} lacks feature "
                                f"columns {missing[:10]}")
            x = ctx.data.preprocessor.transform_frame(df)
            ds = tf.data.Dataset.from_tensor_slices(x).shuffle(len(x), seed=ctx.config.seed).batch(train.batch_size)
            source = f"public unlabeled rows from {path.name} ({len(x)} rows)"
        d = Distiller(ctx.core, student, temperature=cfg.temperature, alpha=cfg.alpha)
        d.compile(optimizer=keras.optimizers.Adam(train.learning_rate))
        t0 = time.perf_counter()
        hist = d.fit(ds, epochs=cfg.epochs or train.epochs, verbose=0)
        out = describe_model(student, ctx.data, ctx.config.compression.latency_runs)
        out["fit_seconds"] = time.perf_counter() - t0
        out.update({"hidden": list(cfg.hidden), "temperature": cfg.temperature, "alpha": cfg.alpha,
                    "data": source, "final_distill_loss": float(hist.history["distill_loss"][-1]),
                    "teacher_parameters": int(sum(int(np.prod(v.shape)) for v in ctx.core.weights))})
        if ctx.config.privacy is not None:
            out["privacy"] = "inherits the teacher's (epsilon, delta): trained on public unlabeled data, alpha=0"
        try:
            tfl = export_variant(student, "float", ctx.data, ctx.run_dir / "model_student.tflite",
                                 latency_runs=ctx.config.compression.latency_runs)
            out["tflite_float"] = {k: tfl[k] for k in ("path", "bytes", "gzip_bytes", "latency_ms_p50",
                                                       "latency_ms_p95", "accuracy")}
            ctx.artifacts["tflite_student"] = tfl["path"]
        except Exception as exc:  # report, never crash on an exporter limitation
            out["tflite_float"] = {"error": f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300]}"}
        return out

    def _plot(self, ctx, section):
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        per = section.get("per_layer_sparsity") or {}
        if not per:
            return None
        path = ctx.run_dir / "plots" / "compression_sparsity.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(per) + 2), 3))
        names = list(per)
        ax.bar(range(len(names)), [per[n] for n in names])
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([n.split("/")[-2] if "/" in n else n for n in names], rotation=45, ha="right",
                           fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel("sparsity")
        ax.set_title(f"kernel sparsity (global {section.get('sparsity', 0):.2f})")
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return "plots/compression_sparsity.png"
