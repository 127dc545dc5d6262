"""De-identification before anything else sees the data: mask direct identifiers in text, drop declared
identifier columns, generalize quasi-identifiers, and measure k-anonymity (Sweeney 2002).

De-identification is not differential privacy: it removes obvious identifiers and coarsens quasi-identifiers,
but linkage on the remaining columns stays possible (hence the k-anonymity number in the report). DP-SGD
(``privacy:``) is what bounds what the *model* reveals.

Example:
    >>> frames, report = deidentify_frames({"train": df}, config.data)
    >>> report["text"]["counts"]["url"]
"""
from __future__ import annotations

import re
from typing import Callable, Dict, List, Tuple

import numpy as np
import pandas as pd

from tfresp.errors import DataError

PLACEHOLDERS = {"url": "<URL>", "email": "<EMAIL>", "card": "<CARD>", "ip": "<IP>", "phone": "<PHONE>",
                "handle": "<USER>"}

_URL = re.compile(r"(?:https?://|\bwww\.)[^\s<>\"']+|\b(?:[a-z0-9-]+\.)+(?:com|org|net|io|co|ly|gl|me|edu|gov|us|"
                  r"uk|de|fm|tv|be|it)/[^\s<>\"']*", re.IGNORECASE)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IP = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.])")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]?\d{3,4}(?!\w)")
_HANDLE = re.compile(r"(?<![\w@])@\w{1,30}")


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) checksum of payment card numbers."""
    d = [int(c) for c in digits if c.isdigit()]
    if not 13 <= len(d) <= 19:
        return False
    total = 0
    for i, v in enumerate(reversed(d)):
        if i % 2:
            v *= 2
            if v > 9:
                v -= 9
        total += v
    return total % 10 == 0


def _phone_ok(s: str) -> bool:
    return 7 <= sum(c.isdigit() for c in s) <= 15


# kind -> (pattern, extra check on the match). Order matters: URLs may contain '@' and digits, e-mails contain
# '@', card numbers look like long phone numbers.
_RULES: List[Tuple[str, re.Pattern, Callable[[str], bool]]] = [
    ("url", _URL, lambda s: True),
    ("email", _EMAIL, lambda s: True),
    ("card", _CARD, luhn_valid),
    ("ip", _IP, lambda s: True),
    ("phone", _PHONE, _phone_ok),
    ("handle", _HANDLE, lambda s: True),
]


def mask_text(text: str, kinds, counts: Dict[str, int] = None) -> str:
    """Replace every identifier of ``kinds`` in ``text`` by its placeholder, counting them in ``counts``."""
    if not isinstance(text, str):
        return text
    for kind, pattern, check in _RULES:
        if kind not in kinds:
            continue

        def repl(m, kind=kind, check=check):
            if not check(m.group(0)):
                return m.group(0)
            if counts is not None:
                counts[kind] = counts.get(kind, 0) + 1
            return PLACEHOLDERS[kind]

        for _ in range(3):  # re-apply: "@a@b" exposes "@b" only after "@a" is replaced
            new = pattern.sub(repl, text)
            if new == text:
                break
            text = new
    return text


def find_identifiers(text: str, kinds=tuple(PLACEHOLDERS)) -> Dict[str, int]:
    """Counts of identifiers of each kind left in ``text`` (placeholders excluded)."""
    counts: Dict[str, int] = {}
    mask_text(text, kinds, counts)
    return counts


def _generalize(series: pd.Series, rule, column: str) -> Tuple[pd.Series, str]:
    spec = {"bin": rule} if isinstance(rule, (int, float)) else dict(rule or {})
    unknown = set(spec) - {"bin", "top", "bottom", "min_count"}
    if unknown or not spec:
        raise DataError(f"Invalid value for `data.deidentify.generalize.{column}`: {rule!r}. Expected a bin width "
                        "(e.g. 10) or a mapping with bin / top / bottom / min_count")
    out, parts = series, []
    if "min_count" in spec:
        counts = out.astype(str).value_counts()
        rare = set(counts[counts < int(spec["min_count"])].index)
        out = out.astype(str).where(~out.astype(str).isin(rare), "Other")
        parts.append(f"categories with < {spec['min_count']} rows -> 'Other' ({len(rare)} merged)")
    numeric_keys = {"bin", "top", "bottom"} & set(spec)
    if numeric_keys:
        if not pd.api.types.is_numeric_dtype(out):
            raise DataError(f"Invalid value for `data.deidentify.generalize.{column}`: {rule!r}. Column {column!r} "
                            "is not numeric; use {min_count: N} to merge rare categories")
        out = out.astype("float64")
        if "bottom" in spec:
            out = out.clip(lower=float(spec["bottom"]))
            parts.append(f"bottom-coded at {spec['bottom']}")
        if "top" in spec:
            out = out.clip(upper=float(spec["top"]))
            parts.append(f"top-coded at {spec['top']}")
        if "bin" in spec:
            w = float(spec["bin"])
            if w <= 0:
                raise DataError(f"Invalid value for `data.deidentify.generalize.{column}`: bin width {w}; "
                                "expected a positive number")
            out = np.floor(out / w) * w
            parts.append(f"binned to width {spec['bin']:g} (value = lower edge of the bin)")
    return out, "; ".join(parts)


def k_anonymity(frame: pd.DataFrame, columns: List[str]) -> dict:
    """k (the smallest equivalence class over ``columns``) and how many rows sit in small classes."""
    sizes = frame.groupby([frame[c].astype(str) for c in columns], sort=False).size()
    return {"columns": list(columns), "k": int(sizes.min()) if len(sizes) else 0,
            "equivalence_classes": int(len(sizes)),
            "rows_in_classes_below_5": int(sizes[sizes < 5].sum()),
            "rows_in_classes_below_10": int(sizes[sizes < 10].sum()), "rows": int(len(frame))}


def deidentify_frames(frames: Dict[str, pd.DataFrame], data_config) -> Tuple[Dict[str, pd.DataFrame], dict]:
    """Apply ``data_config.deidentify`` to every frame (train/test) of a source.

    Args:
        frames: ``{"train": df, "test": df?}`` straight from the source.
        data_config: the ``data`` config section (uses ``text`` and ``deidentify``).

    Returns:
        ``(frames, report)``; the report has per-kind text counts, dropped and generalized columns, and the
        k-anonymity of the released training table over ``deidentify.k_anonymity`` (default: the generalized
        columns).
    """
    dcfg = data_config.deidentify
    out = {}
    report: dict = {"text": None, "dropped": [], "generalized": {}, "k_anonymity": None}
    text_col = getattr(data_config, "text", None)
    kinds = list(dcfg.text or [])
    for name, df in frames.items():
        missing = [c for c in dcfg.drop if c not in df.columns]
        if missing:
            raise DataError(f"Invalid value for `data.deidentify.drop`: columns {missing} not found in the {name} "
                            f"split. Available: {list(map(str, df.columns))[:30]}")
        missing = [c for c in dcfg.generalize if c not in df.columns]
        if missing:
            raise DataError(f"Invalid value for `data.deidentify.generalize`: columns {missing} not found in the "
                            f"{name} split")
        df = df.drop(columns=list(dcfg.drop)).copy()
        for col, rule in dcfg.generalize.items():
            df[col], desc = _generalize(df[col], rule, col)
            report["generalized"][col] = desc
        out[name] = df
    report["dropped"] = list(dcfg.drop)
    if kinds and text_col:
        counts = {k: 0 for k in kinds}
        rows = 0
        for name, df in out.items():
            if text_col not in df.columns:
                raise DataError(f"Invalid value for `data.text`: column {text_col!r} not found in the {name} split")
            before = df[text_col]
            df[text_col] = before.map(lambda t: mask_text(t, kinds, counts))
            rows += int((before.astype(str) != df[text_col].astype(str)).sum())
        report["text"] = {"column": text_col, "counts": counts, "rows_changed": rows,
                          "placeholders": {k: PLACEHOLDERS[k] for k in kinds}}
    elif kinds:
        report["text"] = {"column": None, "note": "data.text is not set: no free-text column was masked"}
    k_cols = dcfg.k_anonymity if dcfg.k_anonymity is not None else list(dcfg.generalize)
    if k_cols:
        missing = [c for c in k_cols if c not in out["train"].columns]
        if missing:
            raise DataError(f"Invalid value for `data.deidentify.k_anonymity`: columns {missing} not in the "
                            "training table (dropped or misspelled?)")
        report["k_anonymity"] = k_anonymity(out["train"], k_cols)
    return out, report
