"""Re-measurement of a compressed model: accuracy, group gap, size, latency (plain functions).

Compression can widen group gaps (Hooker et al. 2020, "Characterising Bias in Compressed
Models"), so every variant is re-scored on the test split: accuracy and, for every sensitive
attribute, fairlearn's ``demographic_parity_difference`` of the variant's own predictions.
"""
from __future__ import annotations

import gzip
import io
import time
from typing import Callable, Dict

import numpy as np


def gzip_size(data: bytes) -> int:
    """Size of ``data`` after gzip -9 (how much a sparse or quantized model shrinks on the wire)."""
    return len(gzip.compress(data, compresslevel=9))


def group_gaps(y_true: np.ndarray, y_pred: np.ndarray, groups: Dict[str, np.ndarray],
               num_classes: int = 2) -> Dict[str, float]:
    """Demographic-parity difference of ``y_pred`` for each sensitive attribute (fairlearn).

    Binary tasks use the positive class (label index 1); multiclass tasks report the largest
    one-vs-rest difference over classes.

    fairlearn gets the rows compressed to weighted cells (group, label, decision) with their row counts as
    ``sample_weight``: a selection rate is then ``sum(count of selected cells) / sum(counts)``, the same integers
    in float64 as the row-by-row ``dot(selected, ones) / n``, so the value is the same (tests/compression) while
    no per-row pandas frame of the test split is built.
    """
    from fairlearn.metrics import demographic_parity_difference

    out = {}
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    for attr, g in groups.items():
        if num_classes == 2:
            out[attr] = float(_dpd(demographic_parity_difference, y_true, y_pred, g))
        else:
            out[attr] = float(max(_dpd(demographic_parity_difference, (y_true == c).astype(int),
                                       (y_pred == c).astype(int), g) for c in range(num_classes)))
    return out


def _dpd(dpd, y_true, y_pred, groups) -> float:
    yt, yp, kw = _cells(y_true, y_pred, groups)
    return dpd(yt, yp, **kw)


def _cells(y_true: np.ndarray, y_pred: np.ndarray, groups):
    """``(y_true, y_pred, sensitive_features=..., sample_weight=...)`` arguments of one row per non-empty
    (group, label, decision) cell, weighted by its row count (integer labels; other labels: the rows as they are)."""
    if y_true.dtype.kind not in "biu" or y_pred.dtype.kind not in "biu" or not len(y_true):
        return y_true, y_pred, {"sensitive_features": np.asarray(groups)}
    from tfresp.data.labels_compact import codes_of

    names, gidx = codes_of(groups)
    yt, it = np.unique(y_true, return_inverse=True)
    yp, ip = np.unique(y_pred, return_inverse=True)
    key = (gidx * len(yt) + it.ravel()) * len(yp) + ip.ravel()
    counts = np.bincount(key, minlength=len(names) * len(yt) * len(yp))
    cell = np.flatnonzero(counts)
    g, rest = np.divmod(cell, len(yt) * len(yp))
    t, p = np.divmod(rest, len(yp))
    return yt[t], yp[p], {"sensitive_features": np.asarray(names, dtype=object)[g],
                          "sample_weight": counts[cell].astype(np.float64)}


def latency_ms(fn: Callable[[object], object], example, runs: int = 200, warmup: int = 10) -> Dict[str, float]:
    """Per-example wall-clock latency of ``fn(example)`` in milliseconds (p50/p95 over ``runs`` calls)."""
    for _ in range(warmup):
        fn(example)
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn(example)
        times[i] = time.perf_counter() - t0
    return {"latency_ms_p50": float(np.percentile(times, 50) * 1e3),
            "latency_ms_p95": float(np.percentile(times, 95) * 1e3), "latency_runs": int(runs)}


def scores(y_true: np.ndarray, proba: np.ndarray, groups: Dict[str, np.ndarray], num_classes: int) -> dict:
    """Accuracy and group gap of a variant from its test-set probabilities."""
    pred = np.argmax(proba, axis=1)
    return {"accuracy": float(np.mean(pred == np.asarray(y_true))),
            "group_gap": group_gaps(y_true, pred, groups, num_classes)}


def take_rows(x, idx):
    if isinstance(x, dict):
        return {k: np.asarray(v)[idx] for k, v in x.items()}
    return x[idx] if getattr(x, "expands_rows", False) else np.asarray(x)[idx]  # CompactRows: expand only those rows


def num_rows(x) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def weights_bytes(model) -> bytes:
    """The model's weights serialized (``np.savez``), the size a Keras checkpoint of it needs."""
    buf = io.BytesIO()
    np.savez(buf, *[w.numpy() for w in model.weights])
    return buf.getvalue()
