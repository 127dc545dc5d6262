"""Encoded tabular rows kept compact: float32 numeric columns + one small integer code per categorical column.

The model input of a tabular run is ``float32 [rows, encoded_dim]`` (numeric columns standardized, categorical
columns one-hot). Kept dense, that is ``4 * encoded_dim`` bytes a row (~0.4 KB for Adult's ~100 dims, 3 GB for
7M training rows) although a row holds only ``n_numeric`` floats and one category per categorical column.
:class:`CompactRows` keeps exactly that (``4 * n_numeric + 1..2 * n_categorical`` bytes a row) and expands rows to
the dense encoding only when they are taken (a batch, an audit sample): ``rows[idx]`` is bit for bit the dense
encoding of those rows (tests/data/test_compact.py compares it with :meth:`TabularPreprocessor.transform_frame`).

It behaves like a read-only 2-D float32 array for the code that reads training inputs: ``len``, ``shape``,
``dtype``, ``ndim``, ``rows[idx]`` / ``rows[a:b]`` / ``rows.take(idx, axis=0)`` (dense rows), ``mean(axis=0)``
and ``np.asarray(rows)`` (the whole dense matrix: only for small data, every tfresp path takes rows instead).
"""
from __future__ import annotations

from typing import List

import numpy as np

#: rows expanded at once by ``np.asarray`` / ``mean`` (bounded temporaries)
_BLOCK = 65_536


class CompactRows:
    """Dense-encoded rows ``[n, width]`` stored as numeric values + categorical codes.

    Args:
        numeric: float32 ``[n, n_numeric]``, already standardized (the dense encoding's numeric values).
        codes: integer ``[n, n_categorical]``, the index of each row's category in its vocabulary, ``-1`` for a
            value outside the vocabulary (its one-hot block is all zeros, as in the dense encoding).
        depths: the vocabulary size of each categorical column (its one-hot width).
        order: dense column ``j`` is column ``order[j]`` of the expanded block (numeric block first, then the
            one-hot blocks in column order), or ``None`` when that already is the dense order.
    """

    #: duck-typed marker for code below tfresp.data (take rows, predict a block at a time)
    expands_rows = True

    def __init__(self, numeric: np.ndarray, codes: np.ndarray, depths: List[int], order=None):
        self.numeric = np.ascontiguousarray(numeric, np.float32)
        self.codes = np.ascontiguousarray(codes)
        self.depths = [int(d) for d in depths]
        self.width = self.numeric.shape[1] + sum(self.depths)
        self.order = None if order is None else np.asarray(order, np.int64)
        self._offsets = self.numeric.shape[1] + np.concatenate([[0], np.cumsum(self.depths)[:-1]]).astype(np.int64)
        if len(self.numeric) != len(self.codes) or self.codes.shape[1] != len(self.depths):
            raise ValueError("CompactRows: numeric and codes must have the same rows, codes one column per depth")

    # -- array-like --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.numeric)

    @property
    def shape(self):
        return (len(self), self.width)

    @property
    def ndim(self) -> int:
        return 2

    @property
    def dtype(self):
        return np.dtype(np.float32)

    @property
    def nbytes(self) -> int:
        return self.numeric.nbytes + self.codes.nbytes

    def _expand(self, numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
        out = np.zeros((len(numeric), self.width), np.float32)
        k = numeric.shape[1]
        out[:, :k] = numeric
        if codes.shape[1]:
            hit = codes >= 0
            rows, cols = np.nonzero(hit)
            out[rows, self._offsets[cols] + codes[rows, cols]] = 1.0
        return out if self.order is None else out[:, self.order]

    def __getitem__(self, idx) -> np.ndarray:
        if isinstance(idx, tuple):
            rows, rest = idx[0], idx[1:]
            return self[rows][(slice(None),) + rest]
        if isinstance(idx, (int, np.integer)):
            return self[np.asarray([idx])][0]
        return self._expand(self.numeric[idx], self.codes[idx])

    def take(self, idx, axis=0) -> np.ndarray:
        if axis != 0:
            return np.asarray(self).take(idx, axis=axis)
        return self[np.asarray(idx)]

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, np.float32)
        for start in range(0, len(self), _BLOCK):
            out[start:start + _BLOCK] = self[start:start + _BLOCK]
        return out if dtype is None else out.astype(dtype)

    def mean(self, axis=None):
        total = np.zeros(self.width, np.float64)
        for start in range(0, len(self), _BLOCK):
            total += self[start:start + _BLOCK].sum(axis=0, dtype=np.float64)
        col = total / max(len(self), 1)
        return col if axis == 0 else float(col.mean())


def _to_tensor(value, dtype=None, name=None, as_ref=False):
    import tensorflow as tf

    return tf.convert_to_tensor(np.asarray(value), dtype=dtype, name=name)


def _register() -> None:
    """``tf.convert_to_tensor(rows)`` (a Keras model called on them) gives the dense matrix."""
    import tensorflow as tf

    tf.register_tensor_conversion_function(CompactRows, _to_tensor)


_register()
