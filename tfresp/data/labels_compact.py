"""Per-row label arrays (sensitive groups, intersections, class names) without one ``str`` object per row.

``series.astype(str).to_numpy()`` makes a new ``str`` for every row (~55-70 bytes each, plus the 8-byte pointer),
and ``np.asarray(labels).astype(str)`` a numpy unicode array of ``4 x longest label`` bytes a row (72 for Adult's
``race``, ~120 for a ``sex_x_race`` intersection). Measured with ``benchmarks/scaling_rows.py`` (10M rows, DP
quickstart), the two sensitive-group arrays of the splits held ~1.3 GB that way, and the fairness audit's
intersections and group codes added ~1 GB of temporaries. Here every row points at one shared ``str`` per distinct
value (8 bytes a row); the values are exactly those of ``astype(str)`` (tests/data/test_labels_compact.py).

Only numpy and pandas are imported (the fairness metrics and ``tfresp monitor`` use this without TensorFlow).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import pandas as pd


def str_labels(values) -> np.ndarray:
    """``values.astype(str)`` (a Series) or ``np.asarray(values).astype(str)`` as an object array of ``str`` in which
    equal values share one object. Same values, row for row; dtype ``object``."""
    series = isinstance(values, pd.Series)
    arr = values if series else np.asarray(values)
    if not series and arr.ndim != 1:
        return arr.astype(str)
    keys = _factorize_keys(arr)
    codes, uniques = pd.factorize(keys, use_na_sentinel=False) if keys is not None else (None, None)
    if keys is None or len(uniques) and bool(np.any(pd.isna(np.asarray(uniques, dtype=object)))):
        out = (values.astype(str).to_numpy() if series else arr.astype(str))  # NaN/None: astype(str) itself
        return np.asarray(out, dtype=object)
    # astype(str) of one row per distinct value (its first), on the original container and dtype: the same
    # conversion as the whole column gets (bytes, categoricals, numbers), row for row
    present, first = np.unique(codes, return_index=True)
    converted = values.iloc[first].astype(str).to_numpy() if series else arr[first].astype(str)
    names = np.empty(len(uniques), dtype=object)
    names[present] = [str(v) for v in converted]
    return names[codes]


def _factorize_keys(arr):
    """What :func:`pd.factorize` groups for :func:`str_labels`, or ``None`` where equal values print apart and
    ``astype(str)`` itself must decide: ``0.0`` and ``-0.0`` are one float key (the bits tell them apart), and an
    object column of ``1``, ``1.0``, ``True`` and ``"1"`` mixes types whose equal values print differently."""
    dtype = arr.dtype
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        raw = np.asarray(arr)
        if dtype.itemsize not in (2, 4, 8) or np.isnan(raw).any():
            return None
        return raw.view(f"i{dtype.itemsize}")
    if dtype == object and pd.api.types.infer_dtype(arr, skipna=False) not in ("string", "bytes", "integer",
                                                                              "boolean", "empty"):
        return None
    return arr


def codes_of(labels) -> Tuple[list, np.ndarray]:
    """``(names, codes)``: the sorted distinct labels (as ``str``) and each row's int64 index into them."""
    codes, uniques = pd.factorize(str_labels(labels), sort=True)
    return [str(g) for g in uniques], codes.astype(np.int64)


def joined_labels(arrays: Sequence, sep: str) -> np.ndarray:
    """Row-wise ``a + sep + b + ...`` of the labels (``astype(str)``) of ``arrays``, shared per distinct value:
    equal to ``(a.astype(str).astype(object) + sep + b.astype(str).astype(object) ...).astype(str)`` row for row."""
    names, codes = codes_of(arrays[0])
    names = np.asarray(names, dtype=object)
    for arr in arrays[1:]:
        other, oc = codes_of(arr)
        names = np.asarray([f"{a}{sep}{b}" for a in names for b in other], dtype=object)
        codes = codes * len(other) + oc
    return np.asarray([str(v) for v in names], dtype=object)[codes]
