"""The prepared data every kind (tabular, text, image) returns: :class:`DataBundle` of :class:`Split` s."""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from tfresp.errors import DataError


@dataclasses.dataclass
class Split:
    """One split: encoded model inputs ``x``, integer labels ``y``, raw ``frame``, sensitive ``groups``.

    In a run a tabular ``x`` is a :class:`~tfresp.data.compact.CompactRows` (array-like; ``x[idx]`` gives the
    dense encoded rows), elsewhere a numpy array (or a dict of arrays for text)."""

    x: np.ndarray
    y: np.ndarray
    frame: pd.DataFrame
    groups: Dict[str, np.ndarray]

    def __len__(self):
        return len(self.y)


@dataclasses.dataclass
class DataBundle:
    train: Split
    validation: Optional[Split]
    test: Split
    classes: List[str]
    feature_columns: List[str]
    sensitive: List[str]
    preprocessor: object
    info: dict
    kind: str = "tabular"
    extra: dict = dataclasses.field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self):
        return self.train.x.shape[1:]

    def summary(self) -> dict:
        def split_summary(s: Optional[Split]):
            if s is None:
                return None
            counts = np.bincount(s.y, minlength=self.num_classes)
            return {
                "rows": int(len(s)),
                "label_balance": {c: float(n / max(len(s), 1)) for c, n in zip(self.classes, counts)},
                "group_sizes": {a: {str(g): int(n) for g, n in zip(*np.unique(v, return_counts=True))}
                                for a, v in s.groups.items()},
            }

        return {
            "source": self.info,
            "kind": self.kind,
            "classes": self.classes,
            "features": self.feature_columns,
            "encoded_dim": int(np.prod(self.input_shape)) if self.kind == "tabular" else None,
            "sensitive": self.sensitive,
            "splits": {"train": split_summary(self.train), "validation": split_summary(self.validation),
                       "test": split_summary(self.test)},
            **self.extra.get("summary", {}),
        }


def require_columns(df: pd.DataFrame, cols: List[str], field: str):
    for c in cols:
        if c not in df.columns:
            raise DataError(f"Invalid value for `{field}`: column {c!r} not found. "
                            f"Available: {list(map(str, df.columns))[:30]}")
