"""Bounded temporaries: the pieces of the tabular data path that work a block of rows at a time.

Measured with ``benchmarks/scaling_rows.py`` (DP quickstart on Adult resampled to 50k-800k rows), much of the
resident memory that grew with the rows came from whole-table temporaries rather than from the data kept:

* encoding: :meth:`TabularPreprocessor.transform_frame` built string tensors of every categorical column, one
  one-hot block per column, their concatenation and a column gather for the whole split at once (~3x the
  encoded float32 matrix at peak, and the allocator kept the pages): :func:`transform_in_blocks` encodes
  ``BLOCK_ROWS`` rows at a time into one preallocated ``float32 [rows, encoded_dim]`` array, so the temporaries
  are those of one block, whatever the rows;
* provenance: :func:`sha256_file` hashes a file in 1 MiB blocks (same digest as hashing its bytes). A CSV source
  is still read whole (``sources.load_file`` parses its bytes after sniffing the delimiter and encoding); a
  chunked reader there is the next step for tables larger than memory;
* the evaluation audit's row hashes (test rows seen in training, duplicates) turned the whole training frame
  into text at once: :func:`row_hashes` hashes a block of rows at a time (same hashes);
* the raw frame of each split was copied again (``reset_index``) for :class:`~tfresp.data.bundle.Split`:
  :func:`plain_index` keeps a frame whose index is already ``0..n-1``;
* batches: ``tf.data`` pipelines that captured the training arrays as tensors (``tf.convert_to_tensor``, then a
  graph constant in the ``map`` function) held two more copies of the feature matrix: :func:`row_gather`
  gathers each batch's rows from the numpy arrays (or :class:`~tfresp.data.compact.CompactRows`) in a
  ``tf.numpy_function``, so only the batch is ever a tensor.

The functions return exactly what the whole-table code returned (tests/data/test_stream.py compares them).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import tensorflow as tf

#: rows encoded at once: ~64k rows x a few hundred one-hot dims keeps the temporaries at tens of MB
BLOCK_ROWS = 65_536


def sha256_file(path, block: int = 1 << 20) -> str:
    """The sha256 of a file's bytes, read ``block`` bytes at a time."""
    h = hashlib.sha256()
    with open(Path(path), "rb") as fh:
        for chunk in iter(lambda: fh.read(block), b""):
            h.update(chunk)
    return h.hexdigest()


def transform_in_blocks(transform: Callable[[pd.DataFrame], np.ndarray], df: pd.DataFrame, width: int,
                        rows: int = BLOCK_ROWS) -> np.ndarray:
    """``transform(df)`` computed ``rows`` rows at a time into one preallocated ``float32 [len(df), width]``
    array (``transform`` must map rows independently, as every tfresp preprocessing transform does)."""
    n = len(df)
    if n <= rows:
        return np.asarray(transform(df), np.float32)
    out = np.empty((n, width), np.float32)
    for start in range(0, n, rows):
        out[start:start + rows] = transform(df.iloc[start:start + rows])
    return out


def plain_index(df: pd.DataFrame) -> pd.DataFrame:
    """``df.reset_index(drop=True)`` without the copy when the index already is ``0..n-1``."""
    idx = df.index
    if isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1:
        return df
    return df.reset_index(drop=True)


def row_hashes(frame: pd.DataFrame, columns, rows: int = BLOCK_ROWS) -> np.ndarray:
    """``pd.util.hash_pandas_object(frame[columns].astype(str), index=False)`` as uint64, ``rows`` rows at a time
    (the text form of every cell is a temporary: whole-table, it was ~0.4 KB a row at the peak of the audit)."""
    cols = [c for c in columns if c in frame.columns]
    out = np.empty(len(frame), np.uint64)
    for start in range(0, len(frame), rows):
        block = frame.iloc[start:start + rows][cols].astype(str)
        out[start:start + len(block)] = pd.util.hash_pandas_object(block, index=False).to_numpy()
    return out


def row_gather(structure):
    """``fn(idx) -> structure`` of the rows ``idx`` (an int64 tensor ``[k]``) of every array in ``structure`` (a
    nest of arrays with the same rows), for ``tf.data.Dataset.map``: numeric arrays and
    :class:`~tfresp.data.compact.CompactRows` are gathered in numpy (no tensor copy of the whole arrays),
    other leaves (strings) with ``tf.gather`` on a tensor. Same values and dtypes as
    ``tf.gather(tf.convert_to_tensor(a), idx)``."""
    from tfresp.data.compact import CompactRows

    leaves = tf.nest.flatten(structure)
    host, dtypes, tensors = [], [], {}
    for i, a in enumerate(leaves):
        if not isinstance(a, CompactRows):
            a = np.asarray(a)
        if isinstance(a, CompactRows) or a.dtype.kind in "biuf":
            host.append((i, a))
            dtypes.append(tf.as_dtype(a.dtype))
        else:
            tensors[i] = tf.convert_to_tensor(a)

    def take(idx):
        return [a[idx] if isinstance(a, CompactRows) else np.take(a, idx, axis=0) for _, a in host]

    def gather(idx):
        out = [None] * len(leaves)
        if host:
            got = tf.numpy_function(take, [idx], dtypes, stateful=False)
            for (i, a), t in zip(host, got):
                t.set_shape(idx.shape[:1].concatenate(a.shape[1:]))
                out[i] = t
        for i, t in tensors.items():
            out[i] = tf.gather(t, idx)
        return tf.nest.pack_sequence_as(structure, out)

    return gather


def release_memory() -> None:
    """Return the allocator's free pages to the system (glibc ``malloc_trim``; elsewhere nothing).

    A whole-column temporary of a large table (a string copy, a float64 copy) is freed when the step ends, but
    glibc keeps the pages of the heap it came from: without this the resident memory of a run keeps the high
    water mark of every step before, and the next step's temporaries come on top of it.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass
