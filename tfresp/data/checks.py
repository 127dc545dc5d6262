"""Data checks run before training: every problem is collected and raised as one :class:`DataError`.

Each check appends ``"`field`: what is wrong. Received: … Remedy: …"`` strings to a :class:`Problems`
list and, where the data can be repaired without guessing, repairs it and records a note for the
report's data section (``warnings``, ``parsed_numeric``, ``imputation``).

Decisions (documented in the README's data section):
- Label values that differ only in case or surrounding spaces (``Default`` / ``default ``) are an
  error: merging them silently could be wrong, keeping them turns a binary task into three classes.
- A class with fewer than ``data.min_class_rows`` rows is an error (no stratified split can put it in
  both train and test, and its metrics would be noise); a class under 1% of the rows is a warning.
- Text columns whose every value is a number written with a currency sign, thousands separators or
  a percent sign are parsed to float (``"$1,200"`` -> 1200.0, ``"12%"`` -> 12.0) and the report says
  so; a column where most but not all values parse is refused, naming the column and the odd values.
- Missing values in a sensitive column become the explicit group ``<missing>`` (a warning), never "nan".
"""
from __future__ import annotations

import re
from typing import Dict, Iterable, List, Optional

import numpy as np
import pandas as pd

from tfresp.data.sources import MISSING
from tfresp.errors import DataError

# "$1,234.50", "-12.5%", "€ 3 000"? (no: only comma thousands), "1,000", "(not) 12"
_NUMBER = re.compile(r"^[-+]?\s*[$€£¥]?\s*[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?\s*%?$")
_MARKER = re.compile(r"[$€£¥%,]")
RARE_FRACTION = 0.01


class Problems(list):
    """A list of problem strings; :meth:`raise_if_any` raises one :class:`DataError` naming all of them."""

    def add(self, field: str, what: str, received=None, remedy: str = ""):
        text = f"`{field}`: {what}."
        if received is not None:
            text += f" Received: {received}."
        if remedy:
            text += f" Remedy: {remedy}."
        self.append(text)

    def raise_if_any(self):
        if len(self) == 1:
            raise DataError(self[0])
        if self:
            raise DataError(f"{len(self)} problems with the data: " + " | ".join(self))


def _short(values: Iterable, n: int = 5) -> list:
    values = list(values)
    return values[:n] + (["…"] if len(values) > n else [])


def is_text_dtype(s: pd.Series) -> bool:
    """Object columns, and the category columns of a CSV file read in chunks (same values, one code a cell)."""
    return s.dtype == object or isinstance(s.dtype, pd.CategoricalDtype)


def str_value_counts(s: pd.Series) -> dict:
    """``s.astype(str).value_counts().to_dict()`` without the string copy of the column for a category column
    (a chunked CSV read): counts of the present categories only (missing values as ``'nan'``), most first."""
    if not isinstance(s.dtype, pd.CategoricalDtype):
        return s.astype(str).value_counts().to_dict()
    cnt = np.bincount(s.cat.codes.to_numpy().astype(np.int64) + 1, minlength=len(s.cat.categories) + 1)
    out = {}
    for key, n in zip(["nan"] + [str(v) for v in s.cat.categories], cnt):  # code -1 (missing) in slot 0
        if n:
            out[key] = out.get(key, 0) + int(n)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _is_missing_text(v) -> bool:
    return isinstance(v, str) and v.strip() in ("", MISSING)


def missing_mask(s: pd.Series) -> np.ndarray:
    mask = s.isna().to_numpy()
    if is_text_dtype(s):
        try:  # each distinct value once (columns repeat few values; a per-row map was most of the checks' time)
            codes, uniques = pd.factorize(s)
        except TypeError:  # unhashable cells: row by row
            return mask | s.map(_is_missing_text).to_numpy(dtype=bool)
        bad = np.fromiter((_is_missing_text(v) for v in uniques), bool, len(uniques))
        mask |= (codes >= 0) & bad[np.maximum(codes, 0)] if len(uniques) else False
    return mask


def check_names(config, columns: List[str], problems: Problems) -> None:
    """Every column named in ``data.*`` / ``fairness.*`` exists; the label is not a sensitive attribute."""
    dc, fc = config.data, config.fairness
    cols = set(columns)
    avail = _short(columns, 20)
    if dc.label and dc.label not in cols:
        problems.add("data.label", f"column {dc.label!r} not found", f"label={dc.label!r}; available: {avail}",
                     "name an existing column")
    for field, names in (("data.sensitive", dc.sensitive), ("data.features", dc.features or []),
                         ("fairness.sensitive", (fc.sensitive or []) if fc else [])):
        missing = [c for c in names if c not in cols]
        if missing:
            problems.add(field, f"column(s) {missing} not found", f"available: {avail}", "fix the column names")
    if dc.text and dc.text not in cols:
        problems.add("data.text", f"column {dc.text!r} not found", f"available: {avail}", "name an existing column")
    sens = list(dc.sensitive) + list((fc.sensitive or []) if fc else [])
    if dc.label and dc.label in sens:
        problems.add("data.sensitive", f"the label column {dc.label!r} is also a sensitive attribute",
                     f"sensitive={sens}", "audit groups by a column other than the label")
    if fc and fc.privileged:
        fs = list(fc.sensitive if fc.sensitive is not None else dc.sensitive)
        for attr in fc.privileged:
            if attr not in fs:
                problems.add(f"fairness.privileged.{attr}", f"{attr!r} is not a sensitive attribute",
                             f"sensitive attributes: {fs}", "key fairness.privileged by a fairness.sensitive name")


def check_privileged_groups(config, frame: pd.DataFrame, problems: Problems) -> None:
    """``fairness.privileged`` names a group that exists in the data."""
    fc = config.fairness
    if not fc or not fc.privileged:
        return
    for attr, group in fc.privileged.items():
        if attr in frame.columns:
            groups = sorted(set(frame[attr].astype(str).str.strip()))
            if str(group) not in groups:
                problems.add(f"fairness.privileged.{attr}", f"group {group!r} does not occur in column {attr!r}",
                             f"groups: {_short(groups, 10)}", "name one of the groups present in the data")


def check_types(frame: pd.DataFrame, columns: List[str], problems: Problems) -> None:
    """Nested (list / struct / map), binary and complex values cannot be model inputs; refuse them by name."""
    bad = {}
    for c in columns:
        s = frame[c]
        if isinstance(s.dtype, np.dtype) and s.dtype.kind == "c":  # float64 keeps the real part, without a word
            bad[c] = [s.dtype.name]
            continue
        if not is_text_dtype(s):
            continue
        sample = s.dropna()
        kinds = {type(v).__name__ for v in sample.iloc[:1000]
                 if isinstance(v, (list, tuple, dict, set, np.ndarray, bytes, bytearray))}
        if kinds:
            bad[c] = sorted(kinds)
    if bad:
        problems.add("data.features", "nested or binary columns cannot be used as features or labels",
                     "; ".join(f"{c!r} holds {k}" for c, k in bad.items()),
                     "flatten or drop them before training, or list the usable columns in data.features")


def parse_numeric_text(frame: pd.DataFrame, columns: List[str], problems: Problems,
                       min_share: float = 0.9) -> Dict[str, str]:
    """Parse text columns that hold numbers with currency/thousands/percent marks (in place).

    Returns ``{column: how}`` for the report; a column where at least ``min_share`` but not all values
    parse is a problem (naming the values that do not parse).
    """
    parsed = {}
    for c in columns:
        s = frame[c]
        if not is_text_dtype(s):
            continue
        present = s[~missing_mask(s)]
        if len(present) == 0 or not all(isinstance(v, str) for v in present.iloc[:1000]):
            continue
        try:  # each distinct value once, rows by their code (same decisions as row by row)
            codes, uniques = pd.factorize(present)
        except TypeError:
            codes, uniques = np.arange(len(present)), present.to_numpy()
        if not all(isinstance(u, str) for u in uniques):  # 1, 1.0 and True hash alike: row by row
            codes, uniques = np.arange(len(present)), present.to_numpy()
        text = pd.Series(uniques, dtype=object).astype(str).str.strip()
        uok = text.str.match(_NUMBER).to_numpy(dtype=bool)
        ok = uok[codes]
        if not uok.any() or not text[uok].str.contains(_MARKER).any():
            continue  # plain categories, or plain numbers (pandas would have read those as numbers)
        if ok.all():
            values = s.map(lambda v: _to_float(v) if isinstance(v, str) and _NUMBER.match(v.strip()) else np.nan)
            frame[c] = values.astype("float64")
            parsed[c] = "numbers written as text (currency/thousands separators/percent) parsed to float"
        elif ok.mean() >= min_share:
            odd = sorted(set(text[~uok]))
            problems.add("data.features", f"column {c!r} looks numeric ({ok.mean():.0%} of the values are numbers "
                         "written as text) but some values are not numbers",
                         f"values {_short(odd)}", "fix those values, or turn the column into categories")
    return parsed


def _to_float(v: str) -> float:
    return float(re.sub(r"[\s$€£¥%,]", "", v))


def check_label(frame: pd.DataFrame, label: str, min_rows: int, problems: Problems,
                train: Optional[pd.DataFrame] = None, with_counts: bool = True) -> List[str]:
    """Missing labels, near-duplicate label values and rare classes (counted in ``train`` when given,
    a separate test file's classes are checked against training later); returns warnings (without counts
    under DP: the report must not carry statistics of the private rows outside the budget)."""
    s = frame[label]
    n_missing = int(s.isna().sum())
    if n_missing:
        problems.add("data.label", f"column {label!r} has {n_missing} missing labels", None,
                     "drop or label those rows")
    counts = pd.Series(str_value_counts(s.dropna()), dtype=np.int64)
    variants = {}
    for value in counts.index:
        variants.setdefault(value.strip().casefold(), []).append(value)
    dups = [v for v in variants.values() if len(v) > 1]
    if dups:
        shown = "; ".join(" vs ".join(f"{x!r} ({counts[x]} rows)" for x in group) for group in dups)
        problems.add("data.label", f"label values in column {label!r} differ only in case or spaces", shown,
                     "make each class spelled one way")
    warnings = []
    if train is not None:
        s = train[label]
        counts = pd.Series(str_value_counts(s.dropna()), dtype=np.int64)
    rare = {k: int(n) for k, n in counts.items() if n < min_rows}
    if rare and not dups:
        problems.add("data.label", f"classes with fewer than data.min_class_rows={min_rows} rows in column "
                     f"{label!r}", f"{rare}", "collect more rows, merge or drop those classes, or lower "
                     "data.min_class_rows")
    for k, n in counts.items():
        if n >= min_rows and n < RARE_FRACTION * len(s):
            counts_text = f" ({int(n)} of {len(s)} rows)" if with_counts else " (under 1% of the rows)"
            warnings.append(f"class {k!r} of {label!r} is rare{counts_text}")
    return warnings


#: rows of the numeric columns converted to float64 at once by the missing/extreme checks
CHECK_BLOCK_ROWS = 65_536


def _numeric_columns(frame: pd.DataFrame, features: List[str]):
    """``frame[features].select_dtypes(include="number", exclude="bool").columns``, read from a zero-row view (no
    copy of the feature columns)."""
    return frame.iloc[:0][features].select_dtypes(include="number", exclude="bool").columns


def _float_blocks(frame: pd.DataFrame, columns):
    """``frame[columns].to_numpy(np.float64, na_value=np.nan)`` in blocks of :data:`CHECK_BLOCK_ROWS` rows (per-column
    counts summed over blocks are those of the whole array; the whole float64 copy was 8 bytes a row a column)."""
    for start in range(0, len(frame), CHECK_BLOCK_ROWS):
        yield frame.iloc[start:start + CHECK_BLOCK_ROWS][list(columns)].to_numpy(np.float64, na_value=np.nan)


def check_missing(frames: List[pd.DataFrame], features: List[str], mode: str, problems: Problems) -> Dict[str, int]:
    """Missing numeric values (error unless ``data.missing: impute``) and infinite values (always an error).

    Returns ``{column: missing count}`` of numeric columns with missing values (all frames together).
    """
    nan_counts, inf_counts = {}, {}
    for frame in frames:
        numeric = _numeric_columns(frame, features)
        if len(numeric) == 0:
            continue
        nans, infs = np.zeros(len(numeric), np.int64), np.zeros(len(numeric), np.int64)
        for v in _float_blocks(frame, numeric):  # one array per block: per-column loops are slow on wide data
            nans += np.isnan(v).sum(axis=0)
            infs += np.isinf(v).sum(axis=0)
        for name, counts in ((nan_counts, nans), (inf_counts, infs)):
            for c in np.flatnonzero(counts):
                name[numeric[c]] = name.get(numeric[c], 0) + int(counts[c])
    if nan_counts and mode != "impute":
        problems.add("data", f"missing (NaN) numeric values in {len(nan_counts)} column(s)", f"{nan_counts}",
                     "set data.missing: impute (median of the training split; under DP declare the fill values "
                     "in data.impute_values), or clean the data")
    if inf_counts:
        problems.add("data", f"infinite values in {len(inf_counts)} column(s)", f"{inf_counts}",
                     "replace them with finite numbers")
    return nan_counts


def fill_sensitive(frame: pd.DataFrame, attrs: List[str], with_counts: bool) -> List[str]:
    """Missing sensitive values become the explicit group ``<missing>`` (in place); returns warnings."""
    warnings = []
    for a in attrs:
        if a not in frame.columns:
            continue
        mask = missing_mask(frame[a])
        if mask.any():
            frame[a] = frame[a].astype(object).where(~mask, MISSING)
            count = f" ({int(mask.sum())} rows)" if with_counts else ""
            warnings.append(f"sensitive attribute {a!r} has missing values{count}: audited as the group {MISSING!r}")
    return warnings


def check_text(frame: pd.DataFrame, column: str, problems: Problems) -> None:
    if column not in frame.columns:
        return
    s = frame[column]
    empty = s.isna() | s.astype(str).str.strip().eq("")
    if empty.all():
        problems.add("data.text", f"every value of the text column {column!r} is empty", f"{len(s)} rows",
                     "point data.text at the column that holds the text")


def check_splits(splits: Dict[str, Optional[pd.DataFrame]], problems: Problems) -> None:
    for name, df in splits.items():
        if df is not None and len(df) == 0:
            problems.add("data.split", f"the {name} split is empty", None,
                         "use more rows or a larger data.split fraction")


# -- columns that look usable but are not features ---------------------------------------------------
_DATE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?$"
                   r"|^\d{1,2}[/.]\d{1,2}[/.]\d{2,4}(?: \d{1,2}:\d{2}(?::\d{2})?)?$")
#: numeric features beyond this magnitude are refused: float32 (the model's inputs) ends at 3.4e38, and
#: standardising squares the values (1e300 ** 2 overflows float64)
EXTREME = 1e30
ID_MIN_ROWS = 20


def datetime_columns(frame: pd.DataFrame, columns: List[str]) -> List[str]:
    """Columns holding dates or timestamps (datetime dtype, or text whose every value is a date)."""
    out = []
    for c in columns:
        s = frame[c]
        if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
            out.append(c)
            continue
        if not is_text_dtype(s):
            continue
        present = s[~missing_mask(s)].iloc[:2000]
        if len(present) and all(isinstance(v, str) and _DATE.match(v.strip()) for v in present):
            out.append(c)
        elif len(present) and all(isinstance(v, (pd.Timestamp, np.datetime64)) or hasattr(v, "isoformat")
                                  for v in present):
            out.append(c)
    return out


def check_datetime(frame: pd.DataFrame, features: List[str], declared, problems: Problems) -> None:
    """A date column would be one-hot encoded, one category per timestamp: refuse it with a remedy."""
    dates = [c for c in datetime_columns(frame, features) if c not in (declared or {})]
    if dates:
        problems.add("data.features", f"column(s) {dates} hold dates or timestamps; as a feature each timestamp "
                     "would become its own category", f"e.g. {frame[dates[0]].dropna().astype(str).iloc[0]!r}",
                     "derive numeric columns from it (year, month, day of week, age in days) and leave it out with "
                     "data.features, or declare its values in data.categories to use them as categories")


def id_like_columns(frame: pd.DataFrame, columns: List[str]) -> Dict[str, str]:
    """``{column: why}`` for columns that identify rows rather than describe them (measured, not by name).

    Text unique per row (one category per row), and whole numbers unique per row that form an arithmetic
    sequence (row numbers) or all have the same number of digits, at least 6 (account numbers).
    Real-valued columns are never ID-like.
    """
    n = len(frame)
    out = {}
    if n < ID_MIN_ROWS:
        return out
    dates = set(datetime_columns(frame, columns))  # refused as dates, with their own remedy
    for c in columns:
        if c in dates:
            continue
        s = frame[c]
        try:
            if s.nunique(dropna=False) != n:  # first: cheap, and most columns stop here (no per-value pass)
                continue
        except TypeError:  # unhashable cells (lists, arrays): the nested-column check refuses them by name
            continue
        text = (is_text_dtype(s) and all(isinstance(v, str) for v in s)
                and not s.str.strip().str.match(_NUMBER).all())  # numbers written as text are parsed, not IDs
        whole = pd.api.types.is_integer_dtype(s) and not pd.api.types.is_bool_dtype(s)
        if not (text or whole) or s.isna().any() or s.nunique(dropna=False) != n:
            continue
        if text:
            out[c] = f"text unique per row ({n} distinct values in {n} rows)"
        else:
            v = np.sort(s.to_numpy(np.int64))
            if len(np.unique(np.diff(v))) == 1:
                out[c] = f"whole numbers unique per row, evenly spaced ({v[0]}..{v[-1]}): row numbers"
            else:
                digits = {len(str(abs(int(x)))) for x in v}
                if len(digits) == 1 and min(digits) >= 6:
                    out[c] = f"whole numbers unique per row, all {min(digits)} digits long: an identifier"
    return out


def check_extreme(frames: List[pd.DataFrame], features: List[str], declared_ranges, problems: Problems) -> None:
    """Finite values too large to standardise or to hold in float32 (refused unless the range is declared)."""
    big = {}
    for frame in frames:
        numeric = [c for c in _numeric_columns(frame, features) if c not in (declared_ranges or {})]
        if not numeric:
            continue
        counts = np.zeros(len(numeric), np.int64)
        with np.errstate(invalid="ignore"):
            for v in _float_blocks(frame, numeric):
                v = np.abs(v)
                counts += (np.isfinite(v) & (v > EXTREME)).sum(axis=0)
        for i in np.flatnonzero(counts):
            big[numeric[i]] = big.get(numeric[i], 0) + int(counts[i])
    if big:
        problems.add("data", f"numeric values beyond ±{EXTREME:g} in {len(big)} column(s) (the model computes in "
                     "float32, whose range ends at 3.4e38; standardising them overflows)", f"{big}",
                     "rescale or log-transform those columns, or declare data.numeric_ranges for them (clipped "
                     "to the declared range)")


HIGH_CARDINALITY_SHARE = 0.5
HIGH_CARDINALITY_MIN = 50


def high_cardinality(frame: pd.DataFrame, features: List[str], declared) -> List[str]:
    """Warnings for text features with so many values (>= 50, and at least half as many as rows) that most
    one-hot weights are learned from a row or two (zip codes, free text): the model memorises them."""
    out = []
    n = len(frame)
    for c in features:
        s = frame[c]
        if not is_text_dtype(s) or c in (declared or {}):
            continue
        k = int(s.nunique(dropna=True)) if all(isinstance(v, str) for v in s.dropna().iloc[:1000]) else 0
        if k >= HIGH_CARDINALITY_MIN and k >= HIGH_CARDINALITY_SHARE * n:
            out.append(f"column {c!r} has {k} distinct values in {n} rows: one-hot encoded, most values are seen "
                       "once or twice and the model memorises them; group rare values, or leave it out with "
                       "data.features")
    return out


def undeclared_values(frame: pd.DataFrame, features: List[str], declared) -> List[str]:
    """Warnings for text features whose values are not all in their declared vocabulary (``data.categories``): the
    model sees such a value as unknown (all zeros in its one-hot). Missing values are the ``<missing>`` category,
    not counted here. Names values and counts of the rows: not for a DP run's report."""
    out = []
    for c in features:
        if c not in (declared or {}) or c not in frame.columns:
            continue
        s = frame[c]
        vocab = {str(v) for v in declared[c]}
        present = s[~missing_mask(s)]
        counts = str_value_counts(present) if is_text_dtype(present) else present.astype(str).value_counts().to_dict()
        other = {k: n for k, n in counts.items() if k not in vocab}
        if other:
            out.append(f"column {c!r}: {sum(other.values())} row(s) hold values not in data.categories.{c} "
                       f"({_short(sorted(other))}); the model sees them as unknown (all zeros in the one-hot); "
                       "declare them to give them their own input")
    return out
