"""Masked-language-model pretraining (Devlin et al., 2019, "BERT", section 3.1).

15% of the real (non-special, non-padding) tokens of every sequence are selected; of those 80%
become ``[MASK]``, 10% a random token and 10% stay unchanged; the loss is cross-entropy on the
selected positions only. Masking happens inside :meth:`MlmModel.per_example_loss` with stateless
random ops seeded by ``(seed, optimizer step)``, so any training pipeline (including Poisson
sampling for DP) works and every pass over the same batch within a step (e.g. the two passes of
ghost clipping) sees the same mask. Each example's loss is the mean over its own masked tokens,
which keeps per-example gradients well defined for DP-SGD.

Example:
    >>> tfresp.fit({"task": "mlm", "data": {"source": tweets, "text": "text"},
    ...             "model": {"kind": "bert", "bert": {"hidden": 64, "layers": 2, "heads": 2}}})
"""
from __future__ import annotations

import dataclasses
import math
from typing import List, Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfresp.concerns import Contribution, Hook, register_hook
from tfresp.errors import ConfigError
from tfresp.models.base import ResponsibleModel

MASK_RATE = 0.15
EVAL_SEED = 7919


def mask_tokens(ids, attention_mask, seed, mask_id: int, vocab_size: int, special_ids: List[int],
                mask_rate: float = MASK_RATE):
    """BERT's 80/10/10 masking.

    Args:
        ids: ``[B, L]`` int32 token ids.
        attention_mask: ``[B, L]`` 1 for real tokens.
        seed: ``[2]`` int seed for stateless random ops.

    Returns:
        ``(masked_ids, selected)`` where ``selected`` is ``[B, L]`` float32 (1 at positions to predict).
    """
    ids = tf.cast(ids, tf.int32)
    shape = tf.shape(ids)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    special = tf.zeros_like(ids, tf.bool)
    for s in special_ids:
        special = special | tf.equal(ids, s)
    candidate = tf.logical_and(tf.cast(attention_mask, tf.bool), tf.logical_not(special))
    selected = tf.logical_and(candidate, tf.random.stateless_uniform(shape, seeds[0]) < mask_rate)
    r = tf.random.stateless_uniform(shape, seeds[1])
    low = max(special_ids) + 1 if max(special_ids) + 1 < vocab_size // 2 else 0
    random_ids = tf.random.stateless_uniform(shape, seeds[2], minval=low, maxval=vocab_size, dtype=tf.int32)
    replaced = tf.where(r < 0.8, tf.fill(shape, tf.constant(mask_id, tf.int32)),
                        tf.where(r < 0.9, random_ids, ids))
    return tf.where(selected, replaced, ids), tf.cast(selected, tf.float32)


def token_losses(ids, logits, selected):
    """Cross-entropy ``[B, L]`` and correctness ``[B, L]`` at every position (callers weight by ``selected``)."""
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(ids, tf.int32),
                                                        logits=tf.cast(logits, tf.float32))
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(ids, tf.int32)), tf.float32)
    return ce * selected, correct * selected


class MlmModel(ResponsibleModel):
    """:class:`ResponsibleModel` whose objective is the masked-LM loss of ``core`` (logits ``[B, L, vocab]``)."""

    def __init__(self, core, mask_id: int, vocab_size: int, special_ids: List[int], seed: int = 0,
                 mask_rate: float = MASK_RATE, **kwargs):
        super().__init__(core, **kwargs)
        self.mask_id, self.vocab_size, self.special_ids = int(mask_id), int(vocab_size), list(special_ids)
        self.seed, self.mask_rate = int(seed), float(mask_rate)
        self.acc_tracker = keras.metrics.Mean(name="masked_accuracy")
        # Masking is an input transform inside the per-example loss. Declaring it tells the privacy concern that
        # the loss is not "cross-entropy of core(x)", so DP uses per-example (vectorized) clipping of
        # per_example_loss rather than ghost norms computed on unmasked inputs.
        self.input_transform = lambda model, x, y, extras: model.masked_inputs(x, training=True)

    @classmethod
    def for_run(cls, ctx) -> "MlmModel":
        pre = ctx.data.preprocessor
        return cls(ctx.core, pre.mask_id, pre.vocab_size, pre.special_ids, ctx.config.seed)

    def _mask(self, x, seed):
        return mask_tokens(x["input_ids"], x["attention_mask"], seed, self.mask_id, self.vocab_size,
                           self.special_ids, self.mask_rate)

    def _seed(self, training):
        step = self.optimizer.iterations if training and self.optimizer is not None else EVAL_SEED
        return tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)])

    def masked_inputs(self, x, training=True):
        """``x`` with this step's masking applied (what the encoder sees)."""
        masked, _ = self._mask(x, self._seed(training))
        return {"input_ids": masked, "attention_mask": x["attention_mask"]}

    def per_example_loss(self, x, y, extras, training=True):
        """Mean masked-token cross-entropy of each example ``[B]`` (0 when nothing was selected)."""
        masked, selected = self._mask(x, self._seed(training))
        logits = self.core({"input_ids": masked, "attention_mask": x["attention_mask"]}, training=training)
        ce, _ = token_losses(x["input_ids"], logits, selected)
        loss = tf.reduce_sum(ce, axis=1) / tf.maximum(tf.reduce_sum(selected, axis=1), 1.0)
        return self.weighted_with_terms(loss, x, y, logits, extras, training), logits

    def train_step(self, data):
        """One step on the masked-LM loss; masked-token accuracy is measured on held-out data (test_step)."""
        x, y, extras = self.unpack(data)
        loss, _ = self.gradient_step(x, y, extras)  # DP (per-example clipping) when gradient_fn is set
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        x, _, _ = self.unpack(data)
        masked, selected = self._mask(x, tf.constant([self.seed, EVAL_SEED], tf.int64))
        logits = self.core({"input_ids": masked, "attention_mask": x["attention_mask"]}, training=False)
        ce, correct = token_losses(x["input_ids"], logits, selected)
        n = tf.reduce_sum(selected)
        self.loss_tracker.update_state(tf.reduce_sum(ce) / tf.maximum(n, 1.0), sample_weight=n)
        self.acc_tracker.update_state(tf.reduce_sum(correct) / tf.maximum(n, 1.0), sample_weight=n)
        return {m.name: m.result() for m in self.metrics}

    def predict_step(self, data):
        x, _, _ = self.unpack(data)
        return self.core(x, training=False)


class MlmLossCurve(keras.callbacks.Callback):
    """Records the training MLM loss every ``every`` steps (window means of per-batch losses)."""

    def __init__(self, every: int = 10):
        super().__init__()
        self.every = max(int(every), 1)

    def on_train_begin(self, logs=None):
        self.steps, self.losses, self._window, self._step, self._prev = [], [], [], 0, (0, 0.0)

    def on_epoch_begin(self, epoch, logs=None):
        self._prev = (0, 0.0)

    def on_train_batch_end(self, batch, logs=None):
        if not logs or "loss" not in logs:
            return
        k, mean = batch + 1, float(logs["loss"])
        pk, pmean = self._prev
        self._window.append(k * mean - pk * pmean)  # the running epoch mean -> this batch's loss
        self._prev = (k, mean)
        self._step += 1
        if len(self._window) >= self.every:
            self.steps.append(self._step)
            self.losses.append(float(np.mean(self._window)))
            self._window = []

    def on_train_end(self, logs=None):
        if self._window:
            self.steps.append(self._step)
            self.losses.append(float(np.mean(self._window)))
            self._window = []


def evaluate_mlm(model: MlmModel, split, batch_size: int) -> dict:
    """Token-weighted masked-LM loss, perplexity and masked-token accuracy on ``split`` (fixed masks)."""
    from tfresp.data.dataset import make_dataset

    ds = make_dataset(split.x, split.y, {}, batch_size, shuffle=False, seed=0)
    out = model.evaluate(ds, verbose=0, return_dict=True)
    loss = float(out["loss"])
    return {"mlm_loss": loss, "perplexity": float(math.exp(min(loss, 50.0))),
            "masked_accuracy": float(out["masked_accuracy"]), "rows": int(len(split))}


@dataclasses.dataclass
class MlmState:
    """``curve``: the run's :class:`MlmLossCurve` callback (None until planned)."""

    curve: Optional[MlmLossCurve] = None


@register_hook
class MaskedLanguageModeling(Hook):
    """The ``mlm`` task's hook: the masking model, and the evaluation (loss curve, perplexity, masked-token
    accuracy; report ``evaluation``)."""

    config_key = "mlm"
    report_key = "evaluation"
    State = MlmState

    def enabled(self, config) -> bool:
        return config.task == "mlm"

    def make_model(self, ctx):
        return MlmModel.for_run(ctx)

    def validate(self, ctx) -> None:
        if ctx.data.kind != "text":
            raise ConfigError([("task", "mlm", "masked-LM pretraining needs text data (set data.text)")])
        if ctx.config.model.kind not in ("bert", "checkpoint"):
            raise ConfigError([("model.kind", ctx.config.model.kind, "bert or checkpoint for task mlm")])

    def plan(self, ctx) -> Contribution:
        every = max(1, ctx.steps_per_epoch * ctx.config.train.epochs // 50)
        curve = ctx.own(self).curve = MlmLossCurve(every)
        return Contribution(callbacks=[curve], notes=[
            f"MLM: {MASK_RATE:.0%} of real tokens selected per sequence; 80% [MASK] / 10% random / 10% kept"])

    def audit(self, ctx):
        bs = max(ctx.config.train.batch_size, 64)
        section = {"test": evaluate_mlm(ctx.model, ctx.data.test, bs), "split_used": "test"}
        if ctx.data.validation is not None:
            section["validation"] = evaluate_mlm(ctx.model, ctx.data.validation, bs)
        curve = ctx.own(self).curve
        steps, losses = (curve.steps, curve.losses) if curve is not None else ([], [])
        section["mlm"] = {"mask_rate": MASK_RATE, "mask_policy": "80% [MASK] / 10% random / 10% unchanged",
                          "loss_curve": {"step": steps, "loss": losses},
                          "loss_start": losses[0] if losses else None, "loss_end": losses[-1] if losses else None,
                          "uniform_perplexity": float(ctx.data.preprocessor.vocab_size)}
        plot = _plot_curve(steps, losses, ctx.run_dir / "plots" / "mlm_loss.png")
        if plot:
            section["plots"] = {"mlm_loss": "plots/mlm_loss.png"}
        return section


def _plot_curve(steps, losses, path):
    if not losses:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(steps, losses, marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("masked-LM loss")
    ax2 = ax.twinx()
    ax2.plot(steps, np.exp(np.minimum(losses, 50)), alpha=0)
    ax2.set_yscale("log")
    ax2.set_ylabel("perplexity")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
