"""Row selection and splits, one implementation for tabular, text and image data.

The steps, in this order, for every data kind:

1. ``data.split.test`` is a path: that file is the test split (:func:`attach_test_file`; read once, its
   sha256 recorded in ``info.test_file``).
2. ``data.max_rows`` (``max_rows_of="source"``, tabular and text): at most that many rows of the source, and
   of an official or user test split (:func:`select_rows`; seeded, stratified by the label when there is one).
3. Test split: the source's official (or the user's) test rows, else a held-out fraction of the source
   (``0.2`` for ``official`` when the source has no test split), stratified by the label (seed ``seed``).
4. Validation: a fraction of the remaining rows, stratified (seed ``seed + 1``).
5. ``data.max_rows`` (``max_rows_of="train"``, images): at most that many *training* rows, chosen after the
   test and validation splits (seed ``seed + 2``), so a few-shot fine-tuning run ("from 25 labelled rows",
   ``configs/digits_finetune.yaml``, ``benchmarks/robustness.py``) is still evaluated on the whole test split.

Without a label (masked-LM pretraining) the fractions and ``max_rows`` are uniform random instead.
Text and image preparation only encode the frames this module returns.

Example:
    >>> frames, info, mode = attach_test_file(frames, info, dc.split.test, dc.format)
    >>> parts = split_frames(frames, "income", mode, validation=0.1, max_rows=3000, seed=0)
    >>> parts.train, parts.validation, parts.test
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple, Union

import numpy as np
import pandas as pd

#: the held-out test fraction when ``split.test: official`` and the source has no test split
DEFAULT_TEST_FRACTION = 0.2


@dataclasses.dataclass
class Frames:
    """Raw rows of each split; ``test_split`` says how the test rows were chosen (``None``: given)."""

    train: pd.DataFrame
    validation: Optional[pd.DataFrame]
    test: pd.DataFrame
    test_split: Optional[str] = None


def stratified_positions(df: pd.DataFrame, label: str, frac: float, seed: int):
    """``(kept, held)`` row positions (each in row order): ``round(frac * n_c)`` rows of every class ``c`` held out,
    seeded. Only ``df[label]`` is read."""
    rng = np.random.default_rng(seed)
    held = []
    for _, idx in df.groupby(label, sort=True, observed=True).indices.items():
        idx = np.array(idx)
        rng.shuffle(idx)
        n = int(round(len(idx) * frac))
        held.extend(idx[:n].tolist())
    mask = np.zeros(len(df), dtype=bool)
    mask[held] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def random_positions(n_rows: int, frac: float, seed: int):
    """``(kept, held)`` row positions: ``round(frac * n)`` rows held out uniformly at random, seeded."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(n_rows)
    n = int(round(n_rows * frac))
    return idx[n:], idx[:n]


def positions(df: pd.DataFrame, label: Optional[str], frac: float, seed: int):
    """``(kept, held)`` row positions of :func:`split` (``df`` may hold only the label column)."""
    return random_positions(len(df), frac, seed) if label is None else stratified_positions(df, label, frac, seed)


def split(df: pd.DataFrame, label: Optional[str], frac: float, seed: int):
    """``(kept, held)`` frames: stratified by ``label`` (row order kept), or random without one; seeded."""
    kept, held = positions(df, label, frac, seed)
    return df.iloc[kept].reset_index(drop=True), df.iloc[held].reset_index(drop=True)


def _test_then_validation(df: pd.DataFrame, label: Optional[str], frac: float, validation: float, seed: int):
    """``(train, validation, test)`` of ``split(df, frac, seed)`` then ``split(kept, validation, seed + 1)``, the
    same rows in the same order, but each final split is copied once from ``df``: the intermediate kept frame
    (80% of the rows) is never built, so the peak holds the source and the final splits only (issue 26: 2.8x the
    frame before, 2x now). The validation split reads only the label column of the kept rows."""
    kept, held = positions(df, label, frac, seed)
    view = df[[label]].iloc[kept].reset_index(drop=True) if label is not None else pd.DataFrame(index=range(len(kept)))
    k2, v2 = positions(view, label, validation, seed + 1)
    del view
    test = df.iloc[held].reset_index(drop=True)
    val = df.iloc[kept[v2]].reset_index(drop=True)
    train = df.iloc[kept[k2]].reset_index(drop=True)
    return train, val, test


def select_rows(df: pd.DataFrame, n: Optional[int], seed: int, label: Optional[str] = None) -> pd.DataFrame:
    """At most ``n`` rows of ``df`` (``data.max_rows``), seeded.

    With a ``label``, stratified: every class keeps its share of the ``n`` rows, rounded by largest remainder
    (ties to the earlier class), so exactly ``n`` rows come back and each class count is within one row of its
    share (a uniform sample drifts: Adult's ``>50K`` share was 25.4% in the 2,700 training rows of
    ``max_rows: 3000``, 24.1% in the source); the rows keep their order. Without one, ``df.sample(n, random_state=seed)``.
    """
    if not n or len(df) <= n:
        return df
    if label is None:
        return df.sample(n=n, random_state=seed).reset_index(drop=True)
    keys = df[label].astype(str)  # missing or mixed-type labels form classes of their own, never an error here
    groups = [np.array(idx) for _, idx in keys.groupby(keys, sort=True).indices.items()]
    sizes = np.array([len(g) for g in groups], dtype=np.float64)
    quota = sizes * n / len(df)
    take = np.floor(quota).astype(int)
    rest = n - int(take.sum())
    order = sorted(range(len(groups)), key=lambda i: (-(quota[i] - take[i]), i))
    for i in order[:rest]:
        take[i] += 1
    rng = np.random.default_rng(seed)
    kept = []
    for g, k in zip(groups, take):
        rng.shuffle(g)
        kept.extend(g[:k].tolist())
    return df.iloc[np.sort(np.asarray(kept, dtype=np.int64))].reset_index(drop=True)


def _consolidated(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its columns of one numpy dtype in one block, as ``df.copy()`` leaves them, without copying the
    category columns. A chunked CSV read leaves one block per column, and row selections (the splits) on such a
    frame consolidate a copy internally: at 4M Adult rows the split's peak was 1.69 GB unconsolidated, 1.45 GB
    consolidated (``benchmarks/scaling_rows.py``). pandas has no public in-place form: without one, a copy."""
    consolidate = getattr(df, "_consolidate_inplace", None)
    if consolidate is None:
        return df.copy()
    consolidate()
    from tfresp.data.stream import release_memory  # the per-column arrays go back to the system

    release_memory()
    return df


def attach_test_file(frames: Dict[str, pd.DataFrame], info: dict, test: Union[float, str], fmt: str = "auto",
                     owned: bool = False, delimiter=None,
                     encoding=None) -> Tuple[Dict[str, pd.DataFrame], dict, Union[float, str]]:
    """Resolve ``data.split.test``: returns ``(frames, info, mode)``, ``mode`` ``"official"`` or a fraction.

    A path: the file becomes ``frames["test"]`` (``info.test_file`` has its provenance and sha256) and the
    mode is ``official``. A fraction drops the source's own test split. Frames are copies: the data checks
    repair them in place. ``owned``: the frames were just read from a file for this run and nobody else holds
    them, so they are not copied (a copy doubled the table in memory: ~1 GB at 10M Adult rows), only consolidated
    (:func:`_consolidated`). ``delimiter`` / ``encoding`` (``data.delimiter`` / ``data.encoding``): the test file is
    read as the source is.
    """
    test_file = False
    if isinstance(test, str) and test != "official":
        from tfresp.data.sources import load_file

        test_file = True  # read here: a fresh frame
        test_frames, test_info = load_file(test, fmt, "data.split.test", delimiter=delimiter, encoding=encoding)
        frames = {**frames, "test": test_frames["train"]}
        info = {**info, "test_file": test_info}
        test = "official"
    keep = {k: _consolidated(v) if owned or k == "test" and test_file else v.copy() for k, v in frames.items()
            if k == "train" or (k == "test" and test == "official")}
    if test_file:
        _whole_numbers_alike(keep)
    return keep, info, test


def _whole_numbers_alike(frames: Dict[str, pd.DataFrame]) -> None:
    """A column of whole numbers in one file and of whole numbers with missing cells in the other (which pandas
    reads as floats) becomes nullable ``Int64`` there (in place), so its values read alike in both (``1``, not
    ``1.0`` beside ``1``: sensitive groups, declared categories, labels)."""
    train, test = frames.get("train"), frames.get("test")
    if train is None or test is None:
        return
    for c in train.columns.intersection(test.columns):
        a, b = train[c], test[c]
        for df, mine, other in ((train, a, b), (test, b, a)):
            if pd.api.types.is_integer_dtype(other.dtype) and pd.api.types.is_float_dtype(mine.dtype):
                present = mine.dropna().to_numpy()
                if len(present) and np.all(np.mod(present, 1) == 0) and np.all(np.abs(present) < 2.0 ** 53):
                    df[c] = mine.astype("Int64")


def split_frames(frames: Dict[str, pd.DataFrame], label: Optional[str], mode: Union[float, str],
                 validation: float, max_rows: Optional[int], seed: int, max_rows_of: str = "source") -> Frames:
    """``max_rows``, the test split, the validation carve-out (see the module docstring for the order)."""
    if max_rows_of not in ("source", "train"):
        raise ValueError(f"`max_rows_of`: 'source' or 'train'. Received: {max_rows_of!r}")
    whole = max_rows if max_rows_of == "source" else None
    train = select_rows(frames["train"], whole, seed, label)
    note = None
    if "test" in frames and mode == "official":
        test = select_rows(frames["test"], whole, seed, label)
    else:
        frac = DEFAULT_TEST_FRACTION if mode == "official" else float(mode)
        note = f"{'random' if label is None else 'stratified'} {frac:.0%} of the source (seed {seed})"
        if validation > 0 and max_rows_of == "source":  # both splits at once, each copied once from the source
            train, val, test = _test_then_validation(train, label, frac, validation, seed)
            return Frames(train=train, validation=val, test=test, test_split=note)
        train, test = split(train, label, frac, seed)
    val = None
    if validation > 0:
        train, val = split(train, label, validation, seed + 1)
    if max_rows_of == "train":
        train = select_rows(train, max_rows, seed + 2, label)
    return Frames(train=train, validation=val, test=test, test_split=note)
