"""The run context: what the builder fills in and concerns read, as named, typed values.

Values that cross concerns are fields of :class:`RunContext` (``ctx.serving``, ``ctx.export_core``,
``ctx.text_parts``, ``ctx.model_extra``, ``ctx.training_extra``, ``ctx.budget``); values private to one concern
live in that concern's own dataclass (``Concern.State``), reached with ``ctx.own(concern)``. There is no
string-keyed bag: a value another concern needs gets a documented field here.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfresp.run.training import steps_per_epoch


def predict_logits(core, x, batch_size: int = 2048) -> np.ndarray:
    """Logits of a Keras core or of a restored SavedModel core (no ``predict``: called in batches)."""
    if getattr(x, "expands_rows", False) and len(x) and hasattr(core, "predict"):
        return core.predict(_expanded_batches(x, batch_size), verbose=0)
    if getattr(x, "expands_rows", False) and len(x):  # CompactRows: dense a block at a time (whole batches)
        block = batch_size * max(1, 65_536 // batch_size)
        return np.concatenate([predict_logits(core, x[i:i + block], batch_size) for i in range(0, len(x), block)])
    if hasattr(core, "predict"):
        return core.predict(x, batch_size=batch_size, verbose=0)
    n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    parts = []
    for i in range(0, n, batch_size):
        xb = {k: v[i:i + batch_size] for k, v in x.items()} if isinstance(x, dict) else x[i:i + batch_size]
        parts.append(np.asarray(core(xb, training=False)))
    return np.concatenate(parts)


def _expanded_batches(x, batch_size: int) -> tf.data.Dataset:
    """The dense rows of a :class:`~tfresp.data.compact.CompactRows` in ``batch_size`` batches, expanded one batch at a
    time, for one ``model.predict`` call: the same batches (and logits, bit for bit) as ``predict`` on dense blocks,
    but one call instead of one per 64k-row block (each call's input pipeline left ~15 MB resident: +140 MB for
    the 400k test rows of a 2M-row run)."""
    width = int(x.shape[1])

    def take(idx):
        return x[idx]

    def gather(idx):
        rows = tf.numpy_function(take, [idx], tf.float32, stateful=False)
        rows.set_shape([None, width])
        return rows

    return tf.data.Dataset.range(len(x)).batch(batch_size).map(gather).prefetch(2)


def predict_proba(core, x, batch_size: int = 2048) -> np.ndarray:
    """Class probabilities as every part of a run computes them: the float32 softmax of :func:`predict_logits`."""
    return tf.nn.softmax(predict_logits(core, x, batch_size)).numpy()


@dataclasses.dataclass
class ServingPlan:
    """What the SavedModel serves beyond ``preprocessor -> core`` (set by audits, read by the export).

    Attributes:
        postprocess: a ``tf.Module`` turning probabilities (+ ``extra_inputs``) into decisions, e.g. the fairness
            group thresholds; None serves the core's argmax.
        extra_inputs: serving inputs the post-processing needs besides the model's raw features (name -> spec).
        served_class_id_test: the test decisions the report's served metrics (``evaluation.served``) are computed
            from; the export checks that the SavedModel reproduces them.
        description: what the post-processing is, for the served metrics (``evaluation.served.postprocessing``).
    """

    postprocess: Optional[Any] = None
    extra_inputs: Dict[str, tf.TensorSpec] = dataclasses.field(default_factory=dict)
    served_class_id_test: Optional[np.ndarray] = None
    description: Optional[str] = None


@dataclasses.dataclass
class TextParts:
    """Pieces of a text model that audits need and a plain ``keras.Model`` cannot give (set by the model's concern).

    Attributes:
        embedding_split: ``fn(core) -> (embed_fn, head_fn, attackable)``: ``embed_fn(raw inputs) -> E`` and
            ``head_fn(E) -> logits`` with ``head_fn(embed_fn(x)) == core(x)``; ``attackable`` is the 0/1 mask of
            the coordinates of ``E`` an embedding-space attack may move (broadcastable to ``E``). Called on the
            trained core, so wrappers added during the run are seen.
        predict_strings: ``fn(strings) -> probabilities``, the text pipeline's own predictor (else the explainer
            composes preprocessor + core).
    """

    embedding_split: Optional[Callable[[keras.Model], Tuple[Callable, Callable, Any]]] = None
    predict_strings: Optional[Callable] = None


@dataclasses.dataclass
class RunContext:
    """Everything a concern may read (and the builder fills in) during a run."""

    config: Any
    data: Any
    run_dir: Path
    strategy: Any = None
    strategy_name: str = "default"
    core: Optional[keras.Model] = None
    model: Optional[keras.Model] = None
    train_extras: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    callbacks: List[Any] = dataclasses.field(default_factory=list)
    contributions: Dict[str, Any] = dataclasses.field(default_factory=dict)
    history: Dict[str, list] = dataclasses.field(default_factory=dict)
    predictions: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    report: Dict[str, Any] = dataclasses.field(default_factory=dict)
    timings: Dict[str, float] = dataclasses.field(default_factory=dict)
    artifacts: Dict[str, str] = dataclasses.field(default_factory=dict)
    quiet: bool = False
    #: the run's privacy budget (None without ``privacy:``): every mechanism that reads private rows spends here
    budget: Optional[Any] = None
    #: the run directory being written (the staging ``run_dir`` becomes it on success) and, on ``--resume``,
    #: the checkpoint to resume from (:class:`tfresp.run.checkpointing.ResumePoint`)
    target: Optional[Path] = None
    resume_point: Optional[Any] = None
    #: set by :func:`tfresp.run.checkpointing.restore_states` once the callbacks' states are restored from it
    callback_states_restored: bool = False
    #: extra fields of the report's ``model`` / ``training`` sections (model builders, checkpointing)
    model_extra: Dict[str, Any] = dataclasses.field(default_factory=dict)
    training_extra: Dict[str, Any] = dataclasses.field(default_factory=dict)
    #: the model the SavedModel serves when it differs from ``core`` (e.g. LoRA merged into the base weights)
    export_core: Optional[keras.Model] = None
    serving: ServingPlan = dataclasses.field(default_factory=ServingPlan)
    #: TFLite variants converted in the post-fit stage (variant -> measurements, or ``{"error": ...}``); the export
    #: stage records them (``compression.<variant>``, ``export.tflite``)
    tflite: Dict[str, dict] = dataclasses.field(default_factory=dict)
    #: the run's DP claim when a trainer other than the privacy concern makes it (federated client-level DP);
    #: the report's ``privacy`` section
    privacy_claim: Optional[Dict[str, Any]] = None
    text_parts: Optional[TextParts] = None
    _own: Dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(len(self.data.train), self.config.train.batch_size)

    def predict_proba(self, x, batch_size: int = 2048) -> np.ndarray:
        """Class probabilities of the trained core on encoded inputs (no post-processing)."""
        return predict_proba(self.core, x, batch_size)

    def predict_splits(self) -> None:
        """``ctx.predictions`` of the test (and validation) split: what the post-fit stage and the audits read."""
        self.predictions["test"] = self.predict_proba(self.data.test.x)
        if self.data.validation is not None:
            self.predictions["validation"] = self.predict_proba(self.data.validation.x)

    def set_own(self, concern, value) -> None:
        """Replace the private state of ``concern`` by ``value`` (an instance of its ``State``)."""
        concern = self._concern(concern)
        if concern.State is None or not isinstance(value, concern.State):
            expected = getattr(concern.State, "__name__", None)
            raise TypeError(f"ctx.set_own({concern.config_key!r}): expected a {expected}, "
                            f"received {type(value).__name__}")
        self._own[concern.config_key] = value

    @staticmethod
    def _concern(concern):
        from tfresp import concerns

        return concerns.get(concern) if isinstance(concern, str) else concern

    def own(self, concern):
        """This run's private state of ``concern`` (an instance, class or config key): its ``State`` dataclass,
        made on first use."""
        concern = self._concern(concern)
        key = concern.config_key
        if key not in self._own:
            state_cls = concern.State
            if state_cls is None:
                raise TypeError(f"concern {key!r} declares no `State` dataclass for ctx.own()")
            self._own[key] = state_cls()
        return self._own[key]


def provide(ctx: RunContext) -> list:
    """Call ``provide`` of every enabled task/model hook and concern (the typed values other concerns and audits
    read, e.g. ``ctx.text_parts``) once the core exists; return them (:func:`tfresp.concerns.active`)."""
    from tfresp import concerns

    active = concerns.active(ctx.config)
    for c in active:
        c.provide(ctx)
    return active


def compose(config, data, run_dir, *, core=None, predict: bool = False, **fields) -> RunContext:
    """The one place a run context is made: by the builder for a new run, and for a finished run by
    ``tfresp audit``, the fairness re-run and the federated client app.

    Args:
        config, data, run_dir: the run's config, prepared :class:`~tfresp.data.bundle.DataBundle` and directory.
        core: a finished run's trained core (Keras model or restored SavedModel core). When given, every enabled
            concern's ``provide`` runs now; the builder instead builds the core later and provides in ``plan``.
        predict: with ``core``, also fill ``ctx.predictions`` (test, validation).
        **fields: any other :class:`RunContext` field (``strategy``, ``budget``, ``quiet``, ``target``, ...).
    """
    ctx = RunContext(config=config, data=data, run_dir=None if run_dir is None else Path(run_dir), **fields)
    if core is not None:
        ctx.core = core
        provide(ctx)
        if predict:
            ctx.predict_splits()
    return ctx
