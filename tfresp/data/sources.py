"""Data sources: the embedded Adult census data, local files, in-memory frames/arrays and TFDS.

Each loader returns ``(frames, info)`` where ``frames`` maps split name (``train`` and, when the
source has one, ``test``) to a pandas DataFrame of raw columns, and ``info`` records provenance
(path, sha256) for the report.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import stat
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from tfresp.errors import DataError

ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country",
    "income",
]
ADULT_CITATION = ("Becker, B. & Kohavi, R. (1996). Adult. UCI Machine Learning Repository. "
                  "https://doi.org/10.24432/C5XW20 (CC BY 4.0)")
MISSING = "<missing>"


def as_category_strings(s: pd.Series) -> pd.Series:
    """A column as category strings, with missing values as the explicit ``<missing>`` category."""
    return s.astype(object).where(~s.isna(), MISSING).astype(str)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_adult_bytes(name: str) -> bytes:
    return resources.files("tfresp.data").joinpath("embedded").joinpath(name).read_bytes()


def _parse_adult(raw_gz: bytes) -> pd.DataFrame:
    text = gzip.decompress(raw_gz).decode("utf-8")
    # The test file starts with a comment line ("|1x3 Cross validator"); data lines never start with '|'.
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("|")]
    df = pd.read_csv(io.StringIO("\n".join(lines)), header=None, names=ADULT_COLUMNS,
                     skipinitialspace=True, na_values=[], keep_default_na=False)
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].str.strip()
    df["income"] = df["income"].str.rstrip(".")  # the test file's labels end with a dot
    df = df.replace("?", MISSING)
    return df


def load_adult():
    """The embedded UCI Adult data: official train (32,561) and test (16,281) splits."""
    tr, te = _read_adult_bytes("adult.data.gz"), _read_adult_bytes("adult.test.gz")
    frames = {"train": _parse_adult(tr), "test": _parse_adult(te)}
    info = {"name": "adult", "kind": "embedded", "citation": ADULT_CITATION, "license": "CC-BY-4.0",
            "files": {"adult.data.gz": _sha256(tr), "adult.test.gz": _sha256(te)}}
    return frames, info


def _infer_format(path: Path, fmt: str, field: str = "data.source") -> str:
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bz2", ".zip", ".xz")]
    ext = suffixes[-1] if suffixes else ""
    mapping = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet",
               ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}
    if ext not in mapping:
        raise DataError(f"Invalid value for `{field}`: cannot tell the format of {str(path)!r}; "
                        "use a .csv/.parquet/.jsonl file or set data.format")
    return mapping[ext]


def load_file(source: str, fmt: str = "auto", field: str = "data.source"):
    """A local CSV / Parquet / JSONL file (optionally gzip-compressed)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"Invalid value for `{field}`: file not found. Received: source={source!r}")
    if path.is_dir():
        raise DataError(f"Invalid value for `{field}`: is a directory, expected a file. Received: source={source!r}")
    mode = path.stat().st_mode  # stat() never blocks; opening a named pipe would wait for a writer
    if not stat.S_ISREG(mode):
        kind = ("a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise DataError(f"`{field}`: is {kind}, not a regular file (reading it could hang or never end). "
                        f"Received: source={source!r}. Remedy: write the data to a file first")
    if path.stat().st_size == 0:
        raise DataError(f"Invalid value for `{field}`: the file is empty. Received: source={source!r}")
    kind = _infer_format(path, fmt, field)
    try:
        if kind == "csv":
            sep = "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","
            df = pd.read_csv(path, sep=sep, encoding_errors="replace")
        elif kind == "parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_json(path, lines=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"Invalid value for `{field}`: the file has no rows. Received: source={source!r}") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
        raise DataError(f"Invalid value for `{field}`: cannot read {kind} file ({first}). "
                        f"Received: source={source!r}") from None
    _check_columns(df, field)
    from tfresp.data.stream import sha256_file  # hashed in blocks: the whole file is never held in memory

    info = {"name": path.name, "kind": kind, "path": str(path.resolve()), "files": {path.name: sha256_file(path)}}
    return {"train": df}, info


def _check_columns(df: pd.DataFrame, field: str):
    if len(df) == 0:
        raise DataError(f"Invalid value for `{field}`: the data has no rows")
    cols = [str(c) for c in df.columns]
    dup = sorted({c for c in cols if cols.count(c) > 1})
    mangled = sorted({c.rsplit(".", 1)[0] for c in cols if "." in c and c.rsplit(".", 1)[1].isdigit()
                      and c.rsplit(".", 1)[0] in cols})
    if dup or mangled:
        raise DataError(f"Invalid value for `{field}`: duplicate column names {dup or mangled}")


def load_memory(data):
    """In-memory data: a DataFrame, a dict of columns, or ``(X, y)`` numpy arrays."""
    if isinstance(data, pd.DataFrame):
        df = data.copy()
    elif isinstance(data, dict):
        df = pd.DataFrame(data)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
        if x.ndim != 2:
            raise DataError(f"Invalid value for `data`: X must be 2-D (rows, features). Received: shape={x.shape}")
        if len(x) != len(y):
            raise DataError(f"Invalid value for `data`: X has {len(x)} rows but y has {len(y)}")
        df = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
        df["label"] = y
    else:
        raise DataError(f"Invalid value for `data`: expected a DataFrame, dict or (X, y). "
                        f"Received: type={type(data).__name__}")
    _check_columns(df, "data")
    _decode_text_bytes(df)
    try:
        hashed = pd.util.hash_pandas_object(df, index=False)
    except TypeError:  # unhashable cells (lists, dicts): hash their text; the data checks refuse them by name
        hashed = pd.util.hash_pandas_object(df.astype(str), index=False)
    digest = _sha256(hashed.values.tobytes())
    return {"train": df}, {"name": "memory", "kind": "memory", "files": {"memory": digest}}


def _decode_text_bytes(df: pd.DataFrame) -> None:
    """Columns of UTF-8 ``bytes`` (tf.data string tensors) become ``str`` in place; binary data stays
    bytes, and the data checks refuse it by name."""
    for col in df.columns:
        s = df[col]
        if s.dtype != object or not len(s) or not all(isinstance(v, bytes) for v in s.iloc[:1000]):
            continue
        try:
            df[col] = s.map(lambda v: v.decode("utf-8") if isinstance(v, bytes) else v)
        except UnicodeDecodeError:
            continue


def _flatten_tfds_frame(df: pd.DataFrame, features) -> pd.DataFrame:
    """Expand fixed-size vector columns into scalar columns; decode bytes; ClassLabel ints -> names."""
    cols = {}
    for col in df.columns:
        s = df[col]
        first = s.iloc[0] if len(s) else None
        if isinstance(first, np.ndarray) and first.ndim == 1:
            mat = np.stack(s.to_numpy())
            for k in range(mat.shape[1]):
                cols[f"{col}_{k}"] = mat[:, k]
        elif isinstance(first, bytes):
            cols[col] = s.str.decode("utf-8", errors="replace")
        else:
            feat = features[col] if col in features.keys() else None
            names = getattr(feat, "names", None)
            cols[col] = s.map(lambda v: names[int(v)]) if names and pd.api.types.is_integer_dtype(s) else s
    return pd.DataFrame(cols)


def load_tfds(name: str):
    """A TensorFlow Datasets dataset by name (``tfds:<name>``); must already be in the local data dir."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name)
    except Exception as exc:  # tfds raises many types for unknown datasets
        raise DataError(f"Invalid value for `data.source`: TFDS dataset {name!r} is not available "
                        f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:160]})") from None
    frames = {}
    for split in ("train", "test"):
        try:
            ds = tfds.load(name, split=split)
        except Exception as exc:  # missing split or data not prepared locally (no downloads here)
            if split == "train":
                raise DataError(f"Invalid value for `data.source`: TFDS dataset {name!r} has no usable train "
                                f"split ({exc.__class__.__name__}: {str(exc).splitlines()[0][:160]})") from None
            continue
        frames[split] = _flatten_tfds_frame(tfds.as_dataframe(ds), builder.info.features)
    return frames, {"name": name, "kind": "tfds", "version": str(builder.info.version), "files": {}}


def load_source(source: str, fmt: str = "auto", memory=None):
    if memory is not None:
        return load_memory(memory)
    if source == "adult":
        return load_adult()
    if source.split(":", 1)[0] == "digits":
        from tfresp.data.digits import load_digits

        return load_digits(source)
    if source.startswith("tfds:"):
        return load_tfds(source[5:])
    return load_file(source, fmt)
