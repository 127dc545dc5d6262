"""Batched, compiled prediction functions for perturbation explainers (LIME).

LIME asks a model for thousands of predictions on perturbed copies of one input. A naive
``classifier_fn`` calls ``model.predict`` (building a ``tf.data`` pipeline and a Keras loop per
call) or, worse, the model once per sample. :class:`BatchedPredictor` instead runs a single
``tf.function`` (traced once: its input signature has a free batch dimension) over fixed-size
chunks and writes the results into one pre-allocated array, so memory stays bounded by
``batch_size`` rows of activations whatever the number of samples.

:class:`TokenizedTextPredictor` adds what matters for transformer text models: duplicate
perturbations are predicted once, and sequences are sorted by length and padded per chunk to
a small set of bucket lengths instead of to the longest sequence.

Example:
    >>> predict = BatchedPredictor(lambda x: tf.nn.softmax(core(x)), tf.TensorSpec([None, 108]))
    >>> proba = predict(np.zeros((5000, 108), np.float32))      # 10 calls of 512 rows, one trace
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence

import numpy as np
import tensorflow as tf


class BatchedPredictor:
    """``inputs -> probabilities`` through one compiled function over fixed-size chunks.

    Args:
        fn: TF function of a batch of inputs returning ``[batch, num_classes]`` probabilities.
        input_signature: ``tf.TensorSpec`` of one batch (batch dimension ``None``).
        batch_size: rows per call of the compiled function.
        dedup: predict identical rows once (useful for LIME text/tabular neighbourhoods).
        sort_by_length: for string inputs, run strings in order of length so that models padding a
            batch to its longest row (tokenizers) pad little.
        cache_size: for string inputs, keep up to this many ``string -> probabilities`` results
            between calls (LIME with several seeds on one text draws many identical perturbations);
            0 disables it. The cache is emptied when full.

    Attributes:
        calls: number of calls of the compiled function so far.
        rows: number of rows the compiled function has evaluated so far.
        max_rows_per_call: largest batch the compiled function has seen (``<= batch_size``).
    """

    def __init__(self, fn: Callable, input_signature: tf.TensorSpec, batch_size: int = 512,
                 dedup: bool = False, sort_by_length: bool = False, cache_size: int = 0):
        self.batch_size = int(batch_size)
        self.cache_size = int(cache_size)
        self._cache: Dict[str, np.ndarray] = {}
        self.dedup = dedup
        self.sort_by_length = sort_by_length
        self.spec = input_signature
        self._compiled = tf.function(fn, input_signature=[input_signature])
        self.calls = 0
        self.rows = 0
        self.max_rows_per_call = 0

    @property
    def traces(self) -> int:
        """Number of times the compiled function was traced (1 after the first call)."""
        return int(self._compiled.experimental_get_tracing_count())

    def _as_array(self, inputs):
        if self.spec.dtype == tf.string:
            return np.asarray(list(inputs), dtype=object)
        return np.asarray(inputs, dtype=self.spec.dtype.as_numpy_dtype)

    def __call__(self, inputs) -> np.ndarray:
        x = self._as_array(inputs)
        inverse = None
        if self.dedup and len(x):
            if x.dtype == object:
                x, inverse = np.unique(x, return_inverse=True)
            else:
                flat = x.reshape(len(x), -1)
                _, first, inverse = np.unique(flat, axis=0, return_index=True, return_inverse=True)
                x = x[first]
        if self.cache_size and x.dtype == object and len(x):
            out = self._cached(x)
        else:
            out = self._predict(x)
        return out if inverse is None else out[inverse.reshape(-1)]

    def _cached(self, x: np.ndarray) -> np.ndarray:
        missing = np.array([s for s in dict.fromkeys(x.tolist()) if s not in self._cache], dtype=object)
        if len(missing):
            if len(self._cache) + len(missing) > self.cache_size:
                self._cache.clear()
            for s, y in zip(missing, self._predict(missing)):
                self._cache[s] = y
        return np.stack([self._cache[s] for s in x.tolist()])

    def _predict(self, x: np.ndarray) -> np.ndarray:
        if self.sort_by_length and x.dtype == object and len(x):
            order = np.argsort([len(str(s)) for s in x], kind="stable")
            sorted_out = self._run(x[order])
            out = np.empty_like(sorted_out)
            out[order] = sorted_out
            return out
        return self._run(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        out = None
        for start in range(0, n, self.batch_size):
            chunk = x[start:start + self.batch_size]
            y = self._compiled(tf.constant(chunk, dtype=self.spec.dtype)).numpy()
            self.calls += 1
            self.rows += len(chunk)
            self.max_rows_per_call = max(self.max_rows_per_call, len(chunk))
            if out is None:
                out = np.empty((n,) + y.shape[1:], dtype=np.float64)
            out[start:start + len(chunk)] = y
        if out is None:
            raise ValueError("Invalid value for argument `inputs`. Received: 0 rows. Expected at least one row.")
        return out


def keras_proba_fn(core, from_logits: bool = True) -> Callable:
    """``x -> softmax(core(x))`` (inference mode) for a core model producing logits."""

    def fn(x):
        out = core(x, training=False)
        return tf.nn.softmax(out) if from_logits else out

    return fn


def tabular_predictor(core, dim: int, batch_size: int = 512, from_logits: bool = True) -> BatchedPredictor:
    """Compiled predictor on encoded tabular rows ``float32 [n, dim]``."""
    return BatchedPredictor(keras_proba_fn(core, from_logits), tf.TensorSpec([None, dim], tf.float32),
                            batch_size)


def string_predictor(model, batch_size: int = 512, from_logits: bool = True, dedup: bool = True,
                     cache_size: int = 0) -> BatchedPredictor:
    """Compiled ``strings -> probabilities`` for a Keras model that takes raw strings (TextVectorization)."""
    return BatchedPredictor(keras_proba_fn(model, from_logits), tf.TensorSpec([None], tf.string), batch_size,
                            dedup=dedup, sort_by_length=True, cache_size=cache_size)


class TokenizedTextPredictor:
    """``strings -> probabilities`` for token-id models (BERT-style), deduplicated and length-bucketed.

    Args:
        tokenize: ``list[str] -> list[list[int]]`` token ids without padding (e.g. a Hugging Face fast
            tokenizer's ``input_ids``), truncated to ``max_length``.
        logits_fn: TF function ``(input_ids [B, L] int32, attention_mask [B, L] int32) -> logits [B, K]``.
        max_length: longest sequence (after truncation).
        batch_size: rows per compiled call.
        bucket: sequences in a chunk are padded to the next multiple of ``bucket``. The compiled function
            has a free ``[None, None]`` signature (one trace for every shape), so ``bucket=1`` (pad to the
            chunk's longest row) costs no retracing; larger buckets bound the set of shapes for backends
            that specialise per shape.
        pad_id: id used for padding.
    """

    def __init__(self, tokenize: Callable[[List[str]], List[List[int]]], logits_fn: Callable, max_length: int = 64,
                 batch_size: int = 256, bucket: int = 8, pad_id: int = 0):
        self.tokenize = tokenize
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.bucket = int(bucket)
        self.pad_id = int(pad_id)
        spec = tf.TensorSpec([None, None], tf.int32)

        def proba(ids, mask):
            return tf.nn.softmax(logits_fn(ids, mask))

        self._compiled = tf.function(proba, input_signature=[spec, spec])
        self.calls = 0
        self.max_rows_per_call = 0
        self.padded_tokens = 0
        self.rows = 0

    @property
    def traces(self) -> int:
        return int(self._compiled.experimental_get_tracing_count())

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = np.asarray(list(texts), dtype=object)
        uniq, inverse = np.unique(texts, return_inverse=True)
        ids = [seq[:self.max_length] for seq in self.tokenize([str(t) for t in uniq])]
        lengths = np.array([len(s) for s in ids])
        order = np.argsort(lengths, kind="stable")
        out = None
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            width = int(min(self.max_length, -(-max(int(lengths[rows].max()), 1) // self.bucket) * self.bucket))
            batch = np.full((len(rows), width), self.pad_id, np.int32)
            mask = np.zeros((len(rows), width), np.int32)
            for i, r in enumerate(rows):
                batch[i, :lengths[r]] = ids[r]
                mask[i, :lengths[r]] = 1
            y = self._compiled(tf.constant(batch), tf.constant(mask)).numpy()
            self.calls += 1
            self.max_rows_per_call = max(self.max_rows_per_call, len(rows))
            self.padded_tokens += batch.size
            self.rows += len(rows)
            if out is None:
                out = np.empty((len(uniq), y.shape[1]), np.float64)
            out[rows] = y
        return out[inverse.reshape(-1)]


def hf_text_predictor(model, tokenizer, max_length: int = 64, batch_size: int = 128, bucket: int = 1,
                      cls_only: bool = True) -> TokenizedTextPredictor:
    """:class:`TokenizedTextPredictor` for a transformers TF sequence classifier and its tokenizer.

    Args:
        cls_only: for BERT classifiers, compute only the ``[CLS]`` position in the last encoder layer
            (exact; see :mod:`tfresp.explain._hf_bert`), after checking it against the full model.

    Example:
        >>> model = TFBertForSequenceClassification.from_pretrained(path, num_labels=3)
        >>> predict = hf_text_predictor(model, AutoTokenizer.from_pretrained(path))
        >>> predict(["what a day", "meh"]).shape
        (2, 3)
    """
    from tfresp.explain import _hf_bert

    def tokenize(texts):
        return tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)["input_ids"]

    if cls_only:
        logits_fn, path, diff = _hf_bert.checked(model, int(getattr(tokenizer, "vocab_size", 30522)))
    else:
        logits_fn, path, diff = _hf_bert.full_logits_fn(model), "full model", None
    pred = TokenizedTextPredictor(tokenize, logits_fn, max_length=max_length, batch_size=batch_size, bucket=bucket,
                                  pad_id=int(tokenizer.pad_token_id or 0))
    pred.path, pred.path_check_max_abs_diff = path, diff
    return pred


def tabular_raw_predictor(raw_proba: Callable, columns: List[dict], batch_size: int = 512) -> BatchedPredictor:
    """Compiled predictor on LIME's numeric view of raw rows, through the run's fitted preprocessor.

    Args:
        raw_proba: TF function ``{column: [B] tensor} -> probabilities`` on raw columns, e.g.
            :func:`raw_proba_fn` (the run's preprocessor + core) or a SavedModel's serving signature.
        columns: LIME's matrix layout, ``{"name", "kind": "numeric"|"categorical", "values": [...]}``;
            categorical columns hold integer codes into ``values`` (raw category strings).
        batch_size: rows per compiled call.

    Inside the compiled function codes become the raw strings and go through the preprocessing
    exactly like serving does, so explanations are of the deployed raw-input model.
    """
    tables: Dict[str, tf.Tensor] = {c["name"]: tf.constant([str(v) for v in c["values"]], tf.string)
                                    for c in columns if c["kind"] == "categorical"}

    def fn(x):
        inputs = {}
        for j, c in enumerate(columns):
            col = x[:, j]
            if c["kind"] == "categorical":
                inputs[c["name"]] = tf.gather(tables[c["name"]], tf.cast(tf.round(col), tf.int32))
            else:
                inputs[c["name"]] = tf.cast(col, tf.float32)
        return raw_proba(inputs)

    return BatchedPredictor(fn, tf.TensorSpec([None, len(columns)], tf.float64), batch_size, dedup=False)


def raw_proba_fn(preprocessor, core) -> Callable:
    """``{column: tensor} -> softmax(core(preprocessor.transform(columns)))``."""

    def fn(inputs):
        return tf.nn.softmax(core(preprocessor.transform(inputs), training=False))

    return fn


def serving_proba_fn(signature) -> Callable:
    """Raw-column probabilities from a tfresp SavedModel's ``serving_default`` signature."""
    from tfresp.export.saved_model import load_layout, signature_inputs

    owner = getattr(signature, "_tfresp_owner", None)  # raw column names -> the signature's input names
    layout = load_layout(owner) if owner is not None else None

    def fn(inputs):
        return signature(**signature_inputs(layout, inputs))["probabilities"]

    return fn
