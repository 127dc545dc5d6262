"""Tabular preprocessing fitted on the training split only, implemented once in TensorFlow.

The same :class:`TabularPreprocessor` transforms the training data (eagerly, once) and runs
inside the exported SavedModel's serving signature, so predictions on raw rows match
training exactly. Numeric columns are standardized with train mean/std; categorical columns
are one-hot encoded with the train vocabulary (unseen categories map to all zeros).

Declared statistics (``data.categories``, ``data.numeric_ranges``) replace the fitted ones: a declared
category list is the vocabulary as given, a declared range ``[lo, hi]`` clips the column and scales it to
``[-1, 1]``. Under DP the undeclared ones are fitted by :mod:`tfresp.data.dp_tabular` instead.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from tfresp.data.sources import MISSING
from tfresp.errors import DataError


def column_kind(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "categorical"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    return "categorical"


def write_spec(directory, filename: str, spec: dict) -> Path:
    """Write a preprocessor's JSON spec into ``directory`` (created if needed); return the file path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_text(json.dumps(spec, indent=1, default=_plain))
    return path


def _plain(obj):
    """JSON fallback for Keras-tracked containers (``_DictWrapper``/``ListWrapper`` proxies of a spec attached
    to a model): Python 3.13's C encoder (used with ``indent`` since 3.13) does not see them as dict/list."""
    from collections.abc import Mapping, Sequence

    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        return list(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def read_spec(directory, filename: str) -> dict:
    return json.loads((Path(directory) / filename).read_text())


def declared_categorical(name: str, values) -> dict:
    """Spec of a categorical column whose vocabulary is declared in ``data.categories`` (public)."""
    return {"name": name, "kind": "categorical", "vocab": [str(v) for v in values], "source": "declared"}


def declared_numeric(name: str, bounds) -> dict:
    """Spec of a numeric column with a declared range: clipped to ``[lo, hi]`` and scaled to ``[-1, 1]``."""
    lo, hi = float(bounds[0]), float(bounds[1])
    return {"name": name, "kind": "numeric", "mean": (lo + hi) / 2, "std": (hi - lo) / 2, "clip": [lo, hi],
            "source": "declared"}


class TabularPreprocessor(tf.Module):
    """Standardize numeric columns and one-hot categorical columns (fitted on train).

    Example:
        >>> pre = TabularPreprocessor.fit(train_df, ["age", "sex"])
        >>> x = pre.transform_frame(test_df)      # float32 [rows, encoded_dim]
    """

    def __init__(self, spec: List[dict]):
        super().__init__(name="tabular_preprocessor")
        # plain Python (not tracked): a tracked list of one dict per column made SavedModel save/load of
        # wide data slow; the fitted values live in the graph as constants and in preprocessing/tabular.json
        self.spec = self._no_dependency(spec)
        self._tables = {}
        for col in spec:
            if col["kind"] == "categorical" and col["vocab"]:
                keys = tf.constant(col["vocab"], dtype=tf.string)
                vals = tf.range(len(col["vocab"]), dtype=tf.int64)
                self._tables[col["name"]] = tf.lookup.StaticHashTable(
                    tf.lookup.KeyValueTensorInitializer(keys, vals), default_value=-1)
        self._layout()

    def _layout(self):
        """Vectorised transform: numeric columns as one block, then one-hots, then one gather back to
        the spec order (one op per column made the serving graph, and its export, slow for wide data)."""
        num = [c for c in self.spec if c["kind"] == "numeric"]
        self._numeric = self._no_dependency([c["name"] for c in num])
        self._numeric_pos = self._no_dependency({n: i for i, n in enumerate(self._numeric)})
        self._mean = np.asarray([c["mean"] for c in num], np.float32)
        self._std = np.asarray([c["std"] for c in num], np.float32)
        # standardize as (x - mean) * (1 / std), never "/ std": TensorFlow's graph optimizer (grappler) rewrites a
        # division by a constant into a multiplication by its reciprocal, so the serving graph and the eager
        # encoding of training/evaluation rows differed by an ulp (scores by ~1e-7; near-tied ROC-AUC pairs and
        # threshold decisions could then differ between the report and the SavedModel). A multiplication is left
        # as it is: the encodings are bit-identical (tests/data/test_preprocess_graph.py).
        self._inv_std = (np.float32(1.0) / self._std).astype(np.float32)
        self._fill = np.asarray([c.get("impute", 0.0) for c in num], np.float32)
        self._fill_mask = np.asarray(["impute" in c for c in num], bool)
        # declared/DP clip ranges (DP runs: inputs are clipped to the released range, training and serving)
        self._lo = np.asarray([c["clip"][0] if "clip" in c else -np.inf for c in num], np.float32)
        self._hi = np.asarray([c["clip"][1] if "clip" in c else np.inf for c in num], np.float32)
        self._clip = any("clip" in c for c in num)
        start, pos = {}, len(num)
        for c in self.spec:
            if c["kind"] != "numeric":
                start[c["name"]] = pos
                pos += len(c["vocab"])
        order, k = [], 0
        for c in self.spec:
            if c["kind"] == "numeric":
                order.append(k)
                k += 1
            else:
                order.extend(range(start[c["name"]], start[c["name"]] + len(c["vocab"])))
        self._order = None if order == list(range(len(order))) else np.asarray(order, np.int32)

    # -- fitting -------------------------------------------------------------------------
    @classmethod
    def fit(cls, df: pd.DataFrame, columns: List[str], categories: Optional[dict] = None,
            ranges: Optional[dict] = None) -> "TabularPreprocessor":
        """Fit on ``df`` (non-DP); declared ``categories`` / ``ranges`` are used as given."""
        categories, ranges = categories or {}, ranges or {}
        spec = []
        for name in columns:
            s = df[name]
            kind = column_kind(s)
            if name in categories:
                spec.append(declared_categorical(name, categories[name]))
            elif name in ranges:
                spec.append(declared_numeric(name, ranges[name]))
            elif kind == "numeric":
                v = s.astype("float64").to_numpy()
                mean, std = float(np.mean(v)), float(np.std(v))
                spec.append({"name": name, "kind": "numeric", "mean": mean, "std": std if std > 0 else 1.0})
            else:
                counts = s.astype(str).value_counts()
                vocab = sorted(counts.index.tolist())
                spec.append({"name": name, "kind": "categorical", "vocab": vocab})
        return cls(spec)

    @property
    def columns(self) -> List[str]:
        return [c["name"] for c in self.spec]

    @property
    def encoded_names(self) -> List[str]:
        names = []
        for c in self.spec:
            if c["kind"] == "numeric":
                names.append(c["name"])
            else:
                names.extend(f"{c['name']}={v}" for v in c["vocab"])
        return names

    @property
    def encoded_dim(self) -> int:
        return len(self.encoded_names)

    def numeric_mask(self) -> np.ndarray:
        """1.0 for encoded dims that come from numeric columns (attackable), 0.0 for one-hot dims."""
        mask = []
        for c in self.spec:
            mask.extend([1.0] if c["kind"] == "numeric" else [0.0] * len(c["vocab"]))
        return np.asarray(mask, dtype=np.float32)

    def encoded_bounds(self):
        """``(lo, hi)`` of every encoded dim from the declared/DP clip ranges (one-hot dims: 0, 1), or ``None``
        when a numeric column has no clip range (non-DP fits: the caller falls back to the data)."""
        lo, hi = [], []
        for c in self.spec:
            if c["kind"] == "numeric":
                if "clip" not in c:
                    return None
                lo.append((c["clip"][0] - c["mean"]) / c["std"])
                hi.append((c["clip"][1] - c["mean"]) / c["std"])
            else:
                lo.extend([0.0] * len(c["vocab"]))
                hi.extend([1.0] * len(c["vocab"]))
        return np.asarray(lo, np.float32), np.asarray(hi, np.float32)

    def mean_row(self) -> np.ndarray:
        """The encoded row of the fitted statistics alone: numeric dims at their mean (0), each categorical
        column uniform over its vocabulary. Uses no rows (an IG baseline under DP)."""
        row = []
        for c in self.spec:
            row.extend([0.0] if c["kind"] == "numeric" else [1.0 / max(len(c["vocab"]), 1)] * len(c["vocab"]))
        return np.asarray(row, np.float32)

    def sample_frame(self, n: int, seed: int) -> pd.DataFrame:
        """``n`` synthetic raw rows drawn from the fitted statistics alone (numeric: normal with the spec's
        mean/std, clipped to its range; categorical: uniform over the vocabulary). Uses no rows: LIME's
        training statistics under DP."""
        rng = np.random.default_rng(seed)
        out = {}
        for c in self.spec:
            if c["kind"] == "numeric":
                x = rng.normal(c["mean"], c["std"], n)
                out[c["name"]] = np.clip(x, *c["clip"]) if "clip" in c else x
            else:
                out[c["name"]] = rng.choice(np.asarray(c["vocab"] or [MISSING], dtype=object), n)
        return pd.DataFrame(out)

    def input_signature(self) -> Dict[str, tf.TensorSpec]:
        return {c["name"]: tf.TensorSpec([None], tf.float32 if c["kind"] == "numeric" else tf.string, name=c["name"])
                for c in self.spec}

    # -- transforming --------------------------------------------------------------------
    def transform(self, inputs: Dict[str, tf.Tensor]) -> tf.Tensor:
        """TF transform of raw columns -> float32 [batch, encoded_dim] (used in training and serving)."""
        block = None
        if self._numeric:
            block = tf.stack([tf.reshape(tf.cast(inputs[n], tf.float32), [-1]) for n in self._numeric], axis=1)
        return self.transform_packed(block, inputs)

    def transform_packed(self, numeric, inputs: Dict[str, tf.Tensor]) -> tf.Tensor:
        """Like :meth:`transform`, numeric columns given as one float [batch, n_numeric] block (spec order)."""
        parts = []
        if self._numeric:
            x = tf.cast(numeric, tf.float32)
            if self._fill_mask.any():  # data.missing: impute -> the recorded fill values, also when serving
                x = tf.where(tf.math.is_nan(x) & self._fill_mask, self._fill, x)
            if self._clip:
                x = tf.clip_by_value(x, self._lo, self._hi)
            parts.append((x - self._mean) * self._inv_std)
        for c in self.spec:
            if c["kind"] == "numeric" or not c["vocab"]:  # an empty (DP-thresholded) vocabulary adds no input
                continue
            x = inputs[c["name"]]
            x = tf.strings.strip(tf.strings.as_string(x) if x.dtype != tf.string else x)
            if "impute" in c:
                x = tf.where(tf.reduce_any(tf.equal(x[:, None], tf.constant(["", MISSING, "nan"])), axis=1),
                             tf.constant(str(c["impute"])), x)
            idx = self._tables[c["name"]].lookup(x)
            parts.append(tf.one_hot(idx, depth=len(c["vocab"]), dtype=tf.float32))
        x = tf.concat(parts, axis=1)
        return x if self._order is None else tf.gather(x, self._order, axis=1)

    def frame_to_inputs(self, df: pd.DataFrame, numeric: bool = True) -> Dict[str, np.ndarray]:
        """Raw columns as arrays; ``numeric=False`` leaves out numeric columns (see :meth:`numeric_block`)."""
        missing = [c["name"] for c in self.spec if c["name"] not in df.columns]
        if missing:
            raise DataError(f"Invalid value for `data`: column(s) {missing[:20]} are missing from the rows to encode")
        out = {}
        block = self.numeric_block(df) if numeric else None
        for c in self.spec:
            if c["kind"] == "numeric":
                if numeric:
                    out[c["name"]] = block[:, self._numeric_pos[c["name"]]]
            else:
                out[c["name"]] = df[c["name"]].astype(str).fillna(MISSING).to_numpy().astype(object)
        return out

    def numeric_block(self, df: pd.DataFrame) -> np.ndarray:
        """The numeric columns of ``df`` as one float32 [rows, n_numeric] array (spec order)."""
        return df[self._numeric].to_numpy(np.float32) if self._numeric else np.zeros((len(df), 0), np.float32)

    def transform_frame(self, df: pd.DataFrame) -> np.ndarray:
        """Raw rows -> float32 [rows, encoded_dim], a block of rows at a time (memory flat in rows)."""
        from tfresp.data.stream import transform_in_blocks

        return transform_in_blocks(self._transform_block, df, self.encoded_dim)

    def transform_compact(self, df: pd.DataFrame):
        """Raw rows -> :class:`~tfresp.data.compact.CompactRows`: the encoding of :meth:`transform_frame` kept as
        standardized numeric values + one category code per categorical column (``rows[idx]`` expands rows to
        exactly the dense encoding). The distinct values of each column go through the same TF transform
        (strip, imputation, vocabulary lookup), so the codes match the serving graph's one-hots."""
        from tfresp.data.compact import CompactRows

        missing = [c["name"] for c in self.spec if c["name"] not in df.columns]
        if missing:
            raise DataError(f"Invalid value for `data`: column(s) {missing[:20]} are missing from the rows to encode")
        numeric = np.empty((len(df), len(self._numeric)), np.float32)
        for start in range(0, len(df), 1 << 16):
            block = tf.constant(self.numeric_block(df.iloc[start:start + (1 << 16)]))
            numeric[start:start + len(block)] = self._numeric_values(block).numpy()
        cats = [c for c in self.spec if c["kind"] != "numeric" and c["vocab"]]
        depth = max([len(c["vocab"]) for c in cats] + [1])
        dtype = np.int8 if depth < 127 else np.int16 if depth < 32_000 else np.int32
        codes = np.empty((len(df), len(cats)), dtype)
        for j, c in enumerate(cats):
            codes[:, j] = self._codes(c, df[c["name"]]).astype(dtype)
        return CompactRows(numeric, codes, [len(c["vocab"]) for c in cats], self._order)

    def _numeric_values(self, x):
        x = tf.cast(x, tf.float32)
        if self._fill_mask.any():
            x = tf.where(tf.math.is_nan(x) & self._fill_mask, self._fill, x)
        if self._clip:
            x = tf.clip_by_value(x, self._lo, self._hi)
        return (x - self._mean) * self._inv_std

    def _codes(self, col: dict, series: pd.Series) -> np.ndarray:
        """Each row's vocabulary index (-1: not in it) via the serving lookup applied to the distinct values."""
        if isinstance(series.dtype, pd.CategoricalDtype):
            codes = series.cat.codes.to_numpy().astype(np.int64)
            uniques = [str(v) for v in series.cat.categories] + ["nan"]  # code -1 (missing) -> str(NaN)
            codes = np.where(codes < 0, len(uniques) - 1, codes)
        else:
            codes, uniques = pd.factorize(series.astype(str).fillna(MISSING), use_na_sentinel=False)
            uniques = [str(v) for v in uniques]
        x = tf.strings.strip(tf.constant(uniques or [""], tf.string))
        if "impute" in col:
            x = tf.where(tf.reduce_any(tf.equal(x[:, None], tf.constant(["", MISSING, "nan"])), axis=1),
                         tf.constant(str(col["impute"])), x)
        lut = self._tables[col["name"]].lookup(x).numpy()
        return lut[codes] if len(codes) else np.zeros(0, np.int64)

    def _transform_block(self, df: pd.DataFrame) -> np.ndarray:
        inputs = {k: tf.constant(v) for k, v in self.frame_to_inputs(df, numeric=False).items()}
        return self.transform_packed(tf.constant(self.numeric_block(df)), inputs).numpy()

    # -- persistence ---------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"type": "tabular", "columns": self.spec}

    def save(self, directory: Path) -> Path:
        return write_spec(directory, "tabular.json", self.to_json())

    @classmethod
    def load(cls, directory: Path) -> "TabularPreprocessor":
        return cls(read_spec(directory, "tabular.json")["columns"])
