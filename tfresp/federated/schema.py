"""The declared schema of a sites run (``federated.sites``): features, classes and preprocessing from the config alone.

In a cross-silo run no party sees the pooled rows, so nothing is fitted on them: every feature column's values are
declared (``data.categories`` for a categorical column: its one-hot vocabulary; ``data.numeric_ranges`` for a
numeric one: clipped and scaled to [-1, 1]) and the classes are ``data.categories[<label>]``. The server builds
the model from this schema (no data); every site encodes its own rows with the same preprocessor.
"""
from __future__ import annotations

from typing import List

import numpy as np


def declared_columns(config) -> List[str]:
    """Every column with declared values (categories first, then numeric ranges, in declaration order)."""
    dc = config.data
    return list(dict.fromkeys(list(dc.categories or {}) + list(dc.numeric_ranges or {})))


def feature_columns(config) -> List[str]:
    """``data.features`` if given, else every declared column but the label (and the sensitive attributes unless
    ``data.use_sensitive``)."""
    dc = config.data
    if dc.features is not None:
        return list(dc.features)
    skip = {dc.label} | (set() if dc.use_sensitive else set(dc.sensitive))
    return [c for c in declared_columns(config) if c not in skip]


def undeclared_features(config) -> List[str]:
    """Columns of ``data.features`` whose values are not declared (a sites run refuses them)."""
    dc = config.data
    declared = set(dc.categories or {}) | set(dc.numeric_ranges or {})
    return [c for c in (dc.features or []) if c not in declared]


def classes(config) -> List[str]:
    from tfresp.data.labels import order_classes

    dc = config.data
    return order_classes([str(v) for v in (dc.categories or {})[dc.label]], dc.positive_class)


def preprocessor(config):
    """The :class:`~tfresp.data.preprocess.TabularPreprocessor` of the declared values only (fits nothing)."""
    from tfresp.data.preprocess import TabularPreprocessor, declared_categorical, declared_numeric

    dc = config.data
    cats, ranges = dc.categories or {}, dc.numeric_ranges or {}
    spec = [declared_categorical(c, cats[c]) if c in cats else declared_numeric(c, ranges[c])
            for c in feature_columns(config)]
    return TabularPreprocessor(spec)


def build_core(config, pre=None):
    """The core model (``model.kind: mlp``) built from the declared schema alone."""
    from tfresp.models.mlp import build_mlp

    pre = pre if pre is not None else preprocessor(config)
    m = config.model
    return build_mlp(int(pre.encoded_dim), len(classes(config)), m.hidden, m.dropout, m.activation)


def empty_like(pre) -> np.ndarray:
    return np.zeros((0, pre.encoded_dim), np.float32)
