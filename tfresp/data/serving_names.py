"""Serving input names: how raw columns map to the SavedModel's ``serving_default`` inputs.

A SavedModel signature input must be a valid TensorFlow name, so ``loan amount`` is served as ``loan_amount``;
with more than :data:`PACK_NUMERIC_ABOVE` numeric columns they are packed into one ``numeric_features`` tensor.
Decided here, from the preprocessing alone, so data preparation reports the names before training and the
export (:mod:`tfresp.export.saved_model`) uses the same layout.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Dict, Iterable

import tensorflow as tf

PACK_NUMERIC_ABOVE = 256
PACKED_NAME = "numeric_features"
# what TensorFlow keeps as a tf.function argument name (it renames `loan-amount` and `interest.rate` itself,
# silently, so a name it would change is renamed here, where the layout records it)
_VALID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def base_name(column: str) -> str:
    """The valid TensorFlow name a column is served under before de-duplication (``loan-amount`` -> ``loan_amount``)."""
    if _VALID.match(column):
        return column
    ascii_ = unicodedata.normalize("NFKD", column).encode("ascii", "ignore").decode()
    base = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", ascii_)).strip("_") or "column"
    return base if base[0].isalpha() else f"col_{base}"


def collisions(columns: Iterable[str]) -> Dict[str, list]:
    """``{served name: [raw columns]}`` for columns that would be served under the same name.

    Names with no ASCII letter or digit to keep (``年龄``, ``收入``) all become ``column``: they are numbered
    (``column``, ``column_2``, recorded in the layout) rather than refused, as there is nothing to confuse.
    """
    groups: Dict[str, list] = {}
    for c in columns:
        groups.setdefault(base_name(c), []).append(c)
    return {name: cols for name, cols in groups.items() if len(cols) > 1 and name != "column"}


def safe_names(columns: Iterable[str], reserved: Iterable[str] = ()) -> Dict[str, str]:
    """``{raw column: valid, unique TensorFlow input name}``; already valid names map to themselves."""
    taken = set(reserved)
    out = {}
    columns = list(columns)
    for c in columns:  # valid names first so they keep their own name
        if _VALID.match(c) and c not in taken:
            out[c] = c
            taken.add(c)
    for c in columns:
        if c in out:
            continue
        base = base_name(c)
        name, k = base, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        out[c] = name
        taken.add(name)
    return out


def serving_layout(preprocessor, extra_inputs: Dict[str, tf.TensorSpec] = None) -> dict:
    """How raw columns map to ``serving_default`` inputs: ``{"inputs": {raw: name}, "packed": ...}``."""
    signature = dict(preprocessor.input_signature())
    numeric = [c["name"] for c in getattr(preprocessor, "spec", []) if isinstance(c, dict)
               and c.get("kind") == "numeric"]
    packed = len(numeric) > PACK_NUMERIC_ABOVE and hasattr(preprocessor, "transform_packed")
    numeric_set = set(numeric) if packed else set()
    per_column = [c for c in signature if c not in numeric_set]
    per_column += [c for c in (extra_inputs or {}) if c not in per_column]
    names = safe_names(per_column, reserved=[PACKED_NAME] if packed else [])
    return {"signature": "serving_default",
            "inputs": names,
            "dtypes": {c: (extra_inputs or {}).get(c, signature.get(c)).dtype.name for c in per_column},
            "packed": {"name": PACKED_NAME, "dtype": "float32", "columns": numeric} if packed else None}
