"""Distillation of a fine-tuned BERT classifier into a shallower BERT student (text runs).

The student keeps the teacher's width and tokenizer and has ``compression.distill.layers`` encoder
layers (default 2). It starts from the teacher ("layer dropping"): the embeddings, pooler and classifier
are copied, and student layer ``j`` gets teacher layer ``teacher_layers[j]``. The default choice is
DistilBERT's rule (Sanh et al., 2019: evenly spread layers, first and last kept; :func:`spread_layers`),
``[0, 5]`` for a 6-layer MiniLM: layer 0 reads the embeddings the student shares, and layer 5 produces
the representation the fine-tuned pooler and classifier were trained on, so the copied head starts on
inputs of the kind it knows. Then :class:`~tfresp.compression.distiller.Distiller` trains the student on
the teacher's softened logits (Hinton et al., 2015), mixed with the hard labels by ``alpha``.

Privacy: under DP only option (a) is implemented: the student is trained on public text
(``distill.data``, ``alpha = 0``) and is post-processing of the DP teacher, so it keeps the teacher's
(epsilon, delta); the run's :class:`~tfresp.privacy.budget.PrivacyBudget` lists it with its source.
A student trained on the private rows would need its own DP-SGD budget; that is refused before training.

Example (YAML)::

    model: {kind: checkpoint, checkpoint: models/minilm-l6-h384-uncased}
    compression:
      distill: {layers: 2, temperature: 2.0, alpha: 0.5, export: true}
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfresp.run.context import predict_proba
from tfresp.errors import ConfigError, DataError, IncompatibleModelError

DEFAULT_LAYERS = 2
LATENCY_BATCH = 32
PRIVATE_DISTILL_REFUSAL = (
    "Option (b), a student trained with its own DP-SGD budget on the private rows and composed into the run's "
    "privacy budget, is not implemented.")


def student_layers(d, teacher_cfg) -> List[int]:
    """The teacher layers the student starts from (``distill.teacher_layers`` or :func:`spread_layers`)."""
    from tfresp.models.bert import spread_layers

    if d.teacher_layers:
        return [int(i) for i in d.teacher_layers]
    return spread_layers(teacher_cfg.num_layers, min(d.layers or DEFAULT_LAYERS, teacher_cfg.num_layers))


def validate_text(ctx, d, problems: list) -> None:
    """Collect the problems of ``compression.distill`` for a text run (BERT teacher) into ``problems``."""
    mc = ctx.config.model
    if ctx.config.task != "classification" or mc.kind not in ("bert", "checkpoint"):
        raise IncompatibleModelError(
            f"compression.distill on text data needs a BERT classifier teacher (model.kind bert or checkpoint, "
            f"task classification). Received: model.kind={mc.kind!r}, task={ctx.config.task!r}. Remedy: remove "
            "compression.distill or distill with tfresp.compression.distiller.Distiller and your own student.")
    if "hidden" in d.model_fields_set:
        problems.append(("compression.distill.hidden", d.hidden, "unset for a BERT teacher: hidden shapes the MLP "
                         "students of tabular runs; a BERT student takes layers (and teacher_layers)"))
    if mc.adapters:
        problems.append(("compression.distill", "model.adapters", "a BERT student copies plain BERT layers; "
                         "distill from a full or LoRA fine-tune (LoRA is merged first)"))
    cfg = ctx.data.extra.get("bert_config")
    if cfg is None:
        return
    n_teacher = cfg.num_layers
    if d.layers is not None and d.layers > n_teacher:
        problems.append(("compression.distill.layers", d.layers, f"1..{n_teacher} (the teacher's layers)"))
    tl = d.teacher_layers
    if tl is not None:
        if not tl or len(set(tl)) != len(tl) or any(not 0 <= i < n_teacher for i in tl):
            problems.append(("compression.distill.teacher_layers", tl,
                             f"distinct teacher layer indices in 0..{n_teacher - 1}"))
        elif d.layers is not None and len(tl) != d.layers:
            problems.append(("compression.distill.teacher_layers", tl,
                             f"{d.layers} indices, one per student layer (compression.distill.layers)"))


def _teacher_for_init(ctx):
    """The teacher as a plain BERT classifier (LoRA merged into the base kernels)."""
    mc = ctx.config.model
    if not mc.lora:
        return ctx.core
    from tfresp.models import bert

    return bert.merge_lora(ctx.core, ctx.data.extra["bert_config"], ctx.data.num_classes,
                           ctx.data.extra["max_length"], mc)


def _dataset(ctx, d):
    """``(dataset, source description, rows)``: the private training split or public text (no labels)."""
    from tfresp.data.dataset import make_dataset
    from tfresp.data.text import trim_padding

    batch = ctx.config.train.batch_size
    if d.data == "train":
        if ctx.budget is not None:  # validate refuses this; kept here so no code path distills on private rows
            raise ConfigError([("compression.distill.data", d.data, "public text under privacy. "
                                + PRIVATE_DISTILL_REFUSAL)])
        ds = make_dataset(ctx.data.train.x, ctx.data.train.y, {}, batch, shuffle=True, seed=ctx.config.seed)
        n = len(ctx.data.train)
        return ds, f"train (private rows, hard labels weighted by alpha={d.alpha})", n
    from tfresp.data.sources import load_file

    path = Path(d.data)
    df = load_file(d.data, field="compression.distill.data")[0]["train"]
    pre = ctx.data.preprocessor
    if pre.column not in df.columns:
        raise DataError(f"Invalid value for `compression.distill.data`: {str(path)!r} has no text column "
                        f"{pre.column!r} (data.text). Received columns: {list(df.columns)[:10]}")
    x = pre.transform_frame(df)
    n = x.rows
    ds = (tf.data.Dataset.from_tensor_slices(dict(x)).shuffle(n, seed=ctx.config.seed).batch(batch)
          .map(lambda z: trim_padding(z, None, None)[0]).prefetch(tf.data.AUTOTUNE))
    return ds, f"public unlabeled text from {path.name} ({n} rows, alpha=0: no labels)", n


def describe(core, data, proba) -> dict:
    """Accuracy and group gap of ``proba`` on the test split; parameters and weight bytes of ``core``."""
    from tfresp.compression.measure import gzip_size, scores, weights_bytes

    raw = weights_bytes(core)
    out = scores(data.test.y, proba, data.test.groups, data.num_classes)
    out.update({"parameters": int(sum(int(np.prod(v.shape)) for v in core.weights)), "weights_bytes": len(raw),
                "weights_gzip_bytes": gzip_size(raw)})
    return out


def _trimmed(x, n: int) -> Dict[str, tf.Tensor]:
    """The first ``n`` rows cut to their longest row, as serving pads a batch (CPU tensors)."""
    mask = np.asarray(x["attention_mask"][:n])
    width = max(int(mask.sum(axis=1).max()), 1)
    with tf.device("/CPU:0"):
        return {k: tf.constant(np.asarray(x[k][:n])[:, :width]) for k in ("input_ids", "attention_mask")}


def paired_latency(models: Dict[str, keras.Model], x, rounds: int = 10, calls: int = 10,
                   batch: int = LATENCY_BATCH) -> dict:
    """CPU latency of each model at batch 1 and ``batch``: median over rounds that alternate the models.

    Every round times ``calls`` batch-1 calls and ``max(1, calls // 5)`` batch calls of each model, the
    models' order reversed every other round, so drift of a shared machine hits them alike.
    """
    inputs = {1: _trimmed(x, 1), batch: _trimmed(x, batch)}
    reps = {1: calls, batch: max(1, calls // 5)}
    names = list(models)
    times = {m: {b: [] for b in inputs} for m in names}
    with tf.device("/CPU:0"):
        fns = {m: tf.function(lambda z, core=core: core(z, training=False)) for m, core in models.items()}
        for m in names:
            for b in inputs:
                fns[m](inputs[b]).numpy()  # trace + warm up
        for r in range(rounds):
            for m in (names if r % 2 == 0 else names[::-1]):
                for b, z in inputs.items():
                    t0 = time.perf_counter()
                    for _ in range(reps[b]):
                        fns[m](z).numpy()
                    times[m][b].append((time.perf_counter() - t0) / reps[b])
    out = {"device": "CPU", "rounds": rounds, "calls_per_round": reps[1], "batch_calls_per_round": reps[batch],
           "batch_size": batch, "inputs": f"test rows padded to their longest row (batch 1: "
                                          f"{inputs[1]['input_ids'].shape[1]} tokens, batch {batch}: "
                                          f"{inputs[batch]['input_ids'].shape[1]})"}
    for m in names:
        b1, bn = float(np.median(times[m][1])) * 1e3, float(np.median(times[m][batch])) * 1e3
        out[m] = {"batch_1_ms": b1, f"batch_{batch}_ms": bn, f"batch_{batch}_ms_per_example": bn / batch}
    if len(names) == 2:
        a, s = names
        out["speedup_batch_1"] = out[a]["batch_1_ms"] / out[s]["batch_1_ms"]
        out[f"speedup_batch_{batch}"] = out[a][f"batch_{batch}_ms"] / out[s][f"batch_{batch}_ms"]
    return out


def export_student(ctx, student, rows: int = 200) -> dict:
    """``saved_model_student/``: raw strings in, like ``saved_model/``; reloaded and compared on test rows."""
    from tfresp.export.saved_model import ServingModule, raw_inputs, save_module

    pre = ctx.data.preprocessor
    module = ServingModule(pre, student, ctx.data.classes)
    path = save_module(module, pre.input_signature(), ctx.run_dir / "saved_model_student")
    loaded = tf.saved_model.load(str(path))
    n = min(rows, len(ctx.data.test))
    served = loaded.signatures["serving_default"](**raw_inputs(pre, ctx.data.test.frame, n))["probabilities"]
    direct = predict_proba(student, ctx.data.test.x[:n], batch_size=256)
    ctx.artifacts["saved_model_student"] = "saved_model_student"
    return {"path": "saved_model_student", "signature": "serving_default", "roundtrip_rows": n,
            "roundtrip_max_abs_diff": float(np.max(np.abs(served.numpy() - direct))),
            "bytes": int(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()))}


def distill_text(ctx, d=None) -> dict:
    """Distill the run's BERT teacher (``ctx.core``) into a shallower BERT; returns the report section.

    ``d`` defaults to ``ctx.config.compression.distill`` (a finished run's context can be distilled again
    with another :class:`~tfresp.compression.config.DistillConfig`, as benchmarks/distill_text.py does).
    """
    from tfresp.compression.distiller import Distiller
    from tfresp.models.bert import build_student
    from tfresp.run.training import make_optimizer, steps_per_epoch

    d = d or ctx.config.compression.distill
    cfg = ctx.data.extra["bert_config"]
    train = ctx.config.train
    layers = student_layers(d, cfg)
    ds, source, rows = _dataset(ctx, d)  # refuses private rows under DP before anything is built
    keras.utils.set_random_seed(ctx.config.seed + 7)
    student = build_student(_teacher_for_init(ctx), cfg, ctx.data.num_classes, layers,
                            ctx.data.extra["max_length"], name="student")
    epochs = d.epochs or train.epochs
    opt_cfg = train.model_copy(update={"learning_rate": d.learning_rate or train.learning_rate, "epochs": epochs})
    dist = Distiller(ctx.core, student, temperature=d.temperature, alpha=d.alpha)
    dist.compile(optimizer=make_optimizer(opt_cfg, steps_per_epoch(rows, train.batch_size)))
    t0 = time.perf_counter()
    hist = dist.fit(ds, epochs=epochs, verbose=0)
    fit_seconds = time.perf_counter() - t0
    proba = predict_proba(student, ctx.data.test.x, batch_size=256)
    out = {"kind": "bert", "layers": len(layers), "teacher_layers": layers, "teacher_num_layers": cfg.num_layers,
           "hidden_size": cfg.hidden_size,
           "init": ("embeddings, pooler and classifier copied from the teacher; student layer j = teacher layer "
                    "teacher_layers[j]" + (" (DistilBERT's rule: evenly spread, first and last kept)"
                                           if not d.teacher_layers else " (set in compression.distill)")),
           "temperature": d.temperature, "alpha": d.alpha, "epochs": epochs,
           "learning_rate": opt_cfg.learning_rate, "data": source, "fit_seconds": fit_seconds,
           "final_distill_loss": float(hist.history["distill_loss"][-1])}
    out.update(describe(student, ctx.data, proba))
    out["teacher"] = describe(ctx.core, ctx.data, ctx.predictions["test"])
    out["teacher"]["note"] = "the run's model; its accuracy is report.evaluation.test.accuracy"
    if ctx.serving.postprocess is not None:  # post-fit: the served decisions differ from the raw model's
        out["teacher"]["note"] += " (the raw model; decisions after post-processing: report.evaluation.served)"
    runs = ctx.config.compression.latency_runs if ctx.config.compression is not None else 200
    out["latency"] = paired_latency({"teacher": ctx.core, "student": student}, ctx.data.test.x,
                                    rounds=max(3, min(25, runs // 20)))
    if d.export:
        out["saved_model"] = export_student(ctx, student)
        out["served"] = ("saved_model/ serves the teacher (the run's model); the student is exported to "
                         "saved_model_student/ with the same raw-text signature")
    else:
        out["served"] = ("saved_model/ serves the teacher; the student is not exported "
                         "(compression.distill.export: false)")
    return out


def register_student(budget, section: dict) -> None:
    """Name the student in the privacy budget's coverage list with its training source (DP runs)."""
    budget.declare_derived("compression.student", "post-processing of the DP-SGD teacher: distilled on "
                                   + section["data"] + "; no private row or label read")
