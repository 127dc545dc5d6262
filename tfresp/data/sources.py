"""Data sources: the embedded Adult census data, local files, in-memory frames/arrays and TFDS.

Each loader returns ``(frames, info)`` where ``frames`` maps split name (``train`` and, when the
source has one, ``test``) to a pandas DataFrame of raw columns, and ``info`` records provenance
(path, sha256) for the report.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import stat
import warnings
import zipfile
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
        raise DataError(f"`{field}`: cannot tell the file's format from its name. Received: source={str(path)!r}. "
                        "Remedy: use a .csv/.tsv/.parquet/.jsonl file name or set data.format")
    return mapping[ext]


def load_file(source: str, fmt: str = "auto", field: str = "data.source", delimiter=None, encoding=None,
              with_counts: bool = True):
    """A local CSV / Parquet / JSONL file (optionally gzip-compressed). ``with_counts=False`` (DP runs): the
    notes for the report count nothing in the rows."""
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"`{field}`: file not found. Received: source={source!r}. Remedy: check the path (a "
                        "relative path is read from the current directory)")
    if path.is_dir():
        raise DataError(f"`{field}`: is a directory, expected a file. Received: source={source!r}. Remedy: name "
                        "the data file inside it")
    mode = path.stat().st_mode  # stat() never blocks; opening a named pipe would wait for a writer
    if not stat.S_ISREG(mode):
        kind = ("a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise DataError(f"`{field}`: is {kind}, not a regular file (reading it could hang or never end). "
                        f"Received: source={source!r}. Remedy: write the data to a file first")
    kind = _infer_format(path, fmt, field)
    if kind == "csv" and delimiter is None and ".tsv" in [s.lower() for s in path.suffixes]:
        delimiter = "\t"  # both readers (the sniffer prefers ',' when a line holds as many commas as tabs)
    if kind == "csv" and _compression(path) is None and path.stat().st_size >= STREAM_BYTES:
        streamed = _stream_csv(path, field, source, delimiter, encoding)
        if streamed is not None:  # None: a file the chunked reader leaves to the whole-file one (below)
            df, read_notes, digest = streamed
            _check_columns(df, field, raw_header=read_notes.pop("header", None))
            info = {"name": path.name, "kind": kind, "path": str(path.resolve()), "files": {path.name: digest},
                    **read_notes}
            return {"train": df}, info
    raw = path.read_bytes()
    if len(raw) == 0:
        raise DataError(f"`{field}`: the file is empty. Received: source={source!r}. Remedy: point it at a file "
                        "with a header line and at least one data row")
    read_notes = {}
    try:
        if kind == "csv":
            df, read_notes = read_csv_bytes(raw, field, source, delimiter=delimiter, encoding=encoding,
                                            compressed=_compression(path), with_counts=with_counts)
        elif kind == "parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_json(path, lines=True)
    except (ValueError, OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError, zipfile.BadZipFile,
            lzma.LZMAError) as exc:  # EOFError: a cut gzip/xz/bz2 file
        raise _unreadable(exc, kind, field, source) from None
    _check_columns(df, field, raw_header=read_notes.pop("header", None))
    info = {"name": path.name, "kind": kind, "path": str(path.resolve()), "files": {path.name: _sha256(raw)},
            **read_notes}
    return {"train": df}, info


#: CSV files at least this large are read in chunks of CHUNK_ROWS rows (memory bounded by the parsed table, not
#: by the text): text columns are kept as pandas categories (one small code a cell, the distinct strings once)
STREAM_BYTES = 32 << 20
CHUNK_ROWS = 250_000


def _stream_csv(path: Path, field: str, source, delimiter=None, encoding=None):
    """``(frame, notes, sha256)`` of a large uncompressed UTF-8 CSV file read in chunks, or ``None`` for a file
    the whole-file reader (:func:`read_csv_bytes`) handles instead: another encoding, a ``;`` delimiter (decimal
    commas are detected on text columns), a bool column missing in a whole chunk. A column that is text in some
    chunks and numbers in others is read again (a second pass), as text in every chunk, as the whole-file reader
    reads it (:func:`_text_again`): the memory stays that of the table.

    The result equals the whole-file read but for the dtype of text columns (``category`` instead of ``object``,
    same values; tests/data/test_stream.py compares them).
    """
    import codecs

    if encoding is not None and codecs.lookup(encoding).name not in ("utf-8", "utf-8-sig"):
        return None
    h, decoder, head = hashlib.sha256(), codecs.getincrementaldecoder("utf-8-sig")(), ""
    try:
        with open(path, "rb") as fh:  # one pass: the digest and a UTF-8 check, 4 MiB at a time
            for block in iter(lambda: fh.read(4 << 20), b""):
                h.update(block)
                text = decoder.decode(block)
                if len(head) < 65536:
                    head += text[:65536]
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return None
    if "\n" not in head:
        return None
    notes = {}
    sep, header = _sep_and_header(head, delimiter, notes)
    if sep == ";":
        return None
    text = []
    for _ in range(2):  # a column of text in some chunks and numbers in others: read again, as text throughout
        parts = _csv_chunks(path, sep, header, field, source, text)
        if any(_bool_and_blank(pieces) for pieces in parts.values()):
            return None  # True/False in some chunks, all missing in others: the whole-file reader keeps the bools
        mixed = [c for c, pieces in parts.items() if _text_and_numbers(pieces)]
        if not mixed:
            break
        text, parts = text + mixed, None
    else:
        return None
    columns = {}
    for c, pieces in parts.items():
        cats = [isinstance(p.dtype, pd.CategoricalDtype) for p in pieces]
        if all(cats):
            try:
                columns[c] = pd.Series(pd.api.types.union_categoricals(pieces, sort_categories=True), name=c)
            except TypeError:  # values of several types in one chunk (not sortable): the whole-file reader decides
                return None
        elif any(cats):  # a chunk where a text column is empty reads as float NaN
            pieces = [p if cat else pd.Series(pd.Categorical([np.nan] * len(p), pd.Index([], dtype=object)), name=c)
                      for p, cat in zip(pieces, cats)]
            columns[c] = pd.Series(pd.api.types.union_categoricals(pieces, sort_categories=True), name=c)
        else:
            columns[c] = pd.concat(pieces, ignore_index=True)
        parts[c] = None
    df = pd.DataFrame(columns, copy=False)
    del columns
    df, header = _drop_trailing_empty(df, header, notes)
    notes["header"] = header
    return df, notes, h.hexdigest()


def _csv_chunks(path: Path, sep: str, header, field: str, source, text) -> dict:
    """``{column: [chunk pieces]}`` of a CSV file read ``CHUNK_ROWS`` rows at a time, text columns as categories;
    the columns in ``text`` are read as text (``str``) in every chunk."""
    parts, extra = {}, _ExtraFields()
    try:
        # low_memory=False: each chunk's columns are typed once (in pieces, a column of numbers then text in one
        # chunk became int and str objects, whose categories cannot be sorted)
        for chunk in _read_csv(lambda: path, sep, header, encoding="utf-8-sig", chunksize=CHUNK_ROWS,
                               low_memory=False, dtype={c: str for c in text} or None):
            extra.pop(chunk)
            for c in chunk.columns:
                col = chunk[c]
                if col.dtype == object:
                    col = col.astype("category")
                parts.setdefault(c, []).append(col)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise _unreadable(exc, "csv", field, source) from None
    extra.check(field, source, sep, len(parts))
    return parts


def _bool_and_blank(pieces) -> bool:
    bools = [p.dtype == bool for p in pieces]
    return any(bools) and not all(bools)


def _text_and_numbers(pieces) -> bool:
    """Text (categories) in some chunks, numbers (not all missing) in others."""
    cats = [isinstance(p.dtype, pd.CategoricalDtype) for p in pieces]
    return any(cats) and not all(cat or p.isna().all() for cat, p in zip(cats, pieces))


def _unreadable(exc: Exception, kind: str, field: str, source) -> DataError:
    """The :class:`DataError` of a file pandas cannot parse (``exc``), in the one error style."""
    import re

    if isinstance(exc, pd.errors.EmptyDataError):
        return DataError(f"`{field}`: the file has no rows. Received: source={source!r}. Remedy: point it at a file "
                         "with a header line and at least one data row")
    first = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
    fields = re.search(r"Expected \d+ fields in line (\d+), saw (\d+)", first)
    if fields:
        return DataError(f"`{field}`: a data row has more fields than the header (line {fields.group(1)}: "
                         f"{fields.group(2)} fields). Received: source={source!r}. Remedy: name every column in the "
                         "header, or remove the extra delimiters from that row (quote a field that holds the "
                         "delimiter)")
    return DataError(f"`{field}`: cannot read the {kind} file ({first}). Received: source={source!r}. Remedy: check "
                     f"that it is a {kind} file (or set data.format), and data.delimiter / data.encoding for a CSV")


def _compression(path: Path):
    return {".gz": "gzip", ".bz2": "bz2", ".zip": "zip", ".xz": "xz"}.get(path.suffix.lower())


def _decode(raw: bytes, field: str, source, encoding, with_counts: bool = True):
    """``(text, notes)``: UTF-8 (BOM stripped) when the bytes are UTF-8; else the encoding charset-normalizer
    measures (cp1252 preferred on a tie, the commonest single-byte encoding of spreadsheets), with a warning.

    A UTF-8 file with a few invalid bytes is decoded with U+FFFD replacements and a warning that counts them
    (``with_counts``; a DP run's report holds no count of the private rows).
    """
    if encoding is not None:
        try:
            return raw.decode(encoding), {"encoding": encoding}
        except (UnicodeDecodeError, LookupError) as exc:
            raise DataError(f"`data.encoding`: cannot decode the file as {encoding!r} ({exc.__class__.__name__}: "
                            f"{str(exc)[:120]}). Received: source={source!r}. Remedy: name the file's encoding "
                            "(e.g. utf-8, cp1252, latin-1) or leave data.encoding unset to detect it") from None
    try:
        return raw.decode("utf-8-sig"), {}
    except UnicodeDecodeError:
        pass
    text = raw.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    if any(ord(ch) > 127 and ch != "\ufffd" for ch in text):  # valid multi-byte UTF-8 too: a damaged UTF-8 file
        return text, {"encoding": "utf-8", "warnings": [
            f"the file is UTF-8 with {bad if with_counts else 'some'} invalid byte sequence(s), read as U+FFFD; "
            "set data.encoding to read it in another encoding"]}
    from charset_normalizer import from_bytes

    matches = list(from_bytes(raw))
    if not matches:
        raise DataError(f"`{field}`: the file is not UTF-8 and its encoding cannot be detected. Received: "
                        f"source={source!r}. Remedy: set data.encoding (e.g. cp1252, latin-1) or save it as UTF-8")
    best = matches[0]
    tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    chosen = next((m for m in tied if "cp1252" in m.could_be_from_charset), best)
    enc = chosen.encoding
    others = sorted({m.encoding for m in tied} - {enc})
    note = (f"the file is not UTF-8; decoded as {enc} (detected by charset-normalizer"
            + (f"; {', '.join(others[:4])} fit equally well" if others else "") + "); set data.encoding if wrong")
    return raw.decode(enc, errors="replace"), {"encoding": enc, "warnings": [note]}


def _sniff_delimiter(text: str) -> str:
    """The delimiter of CSV ``text`` measured by :class:`csv.Sniffer` over its first lines (``,`` if unsure)."""
    import csv

    sample = "\n".join(text[:65536].splitlines()[:50])
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def read_csv_bytes(raw: bytes, field: str, source, delimiter=None, encoding=None, compressed=None,
                   with_counts: bool = True):
    """A CSV file's bytes as a DataFrame: the one place tfresp reads CSV.

    Detects (and notes for the report) the encoding (:func:`_decode`) and the delimiter (``,``, ``;``, tab,
    ``|`` by :class:`csv.Sniffer`) unless ``data.encoding`` / ``data.delimiter`` declare them. Returns
    ``(frame, notes)``; ``notes["header"]`` is the header row as written (pandas renames a repeated ``a`` to
    ``a.1``, which must not be confused with a real column named ``a.1``).
    """
    if compressed:
        import bz2

        if compressed == "gzip":
            raw = gzip.decompress(raw)
        elif compressed == "bz2":
            raw = bz2.decompress(raw)
        elif compressed == "xz":
            raw = lzma.decompress(raw)
        else:
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                members = [n for n in z.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")]
                if len(members) != 1:  # the first of several would be read without a word (or a folder entry)
                    raise DataError(f"`{field}`: the zip archive must hold one data file. Received: source="
                                    f"{source!r}, files={members[:10]}. Remedy: put one file in the archive, or "
                                    "extract the one to use and point data.source at it")
                raw = z.read(members[0])
    text, notes = _decode(raw, field, source, encoding, with_counts)
    sep, header = _sep_and_header(text, delimiter, notes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pd.errors.DtypeWarning)  # mixed columns: read again below
        df, extra = _read_csv(lambda: io.StringIO(text), sep, header), _ExtraFields()
    extra.pop(df)
    extra.check(field, source, sep, len(df.columns))
    _text_again(df, lambda: io.StringIO(text), sep)
    df, header = _drop_trailing_empty(df, header, notes)
    if sep == ";":
        decimal = _decimal_comma(df)
        if decimal:
            notes["decimal_comma"] = decimal
    notes["header"] = header
    return df, notes


_DECIMAL_COMMA = r"^[-+]?\d+,\d+$|^[-+]?\d+$"


def _decimal_comma(df: pd.DataFrame) -> list:
    """In a ``;``-separated file, text columns of numbers written with a decimal comma (``1,5``) become floats
    (in place; the European convention that puts ``;`` between fields); returns the columns converted."""
    out = []
    for c in df.columns:
        s = df[c]
        if s.dtype != object:
            continue
        present = s.dropna()
        if not len(present) or not all(isinstance(v, str) for v in present):
            continue
        text = present.str.strip()
        if text.str.match(_DECIMAL_COMMA).all() and text.str.contains(",").any():
            df[c] = s.map(lambda v: float(v.strip().replace(",", ".")) if isinstance(v, str) else np.nan)
            out.append(str(c))
    return out


def _check_columns(df: pd.DataFrame, field: str, raw_header=None):
    """No rows, or a column name used twice (for CSV: in the header as written, so ``score`` and ``score.1``
    are two columns while ``score``, ``score`` is refused)."""
    if len(df) == 0:
        raise DataError(f"`{field}`: the data has no rows. Received: columns={[str(c) for c in df.columns][:10]}. "
                        "Remedy: give at least one row (a CSV file: data rows after the header line)")
    cols = [str(c) for c in (raw_header if raw_header is not None else df.columns)]
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise DataError(f"`{field}`: a column name is used more than once. Received: duplicated={dup}. Remedy: "
                        "give each column its own name")


def load_memory(data):
    """In-memory data: a DataFrame, a dict of columns, or ``(X, y)`` numpy arrays."""
    if isinstance(data, pd.DataFrame):
        df = data.copy()
    elif isinstance(data, dict):
        df = pd.DataFrame(data)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        df = _frame_of_xy(*data)
    else:
        raise DataError(f"`data`: expected a DataFrame, a dict of columns or (X, y). Received: "
                        f"type={type(data).__name__}. Remedy: pass one of those, or a file path as data.source")
    names = [str(c) for c in df.columns]
    _check_columns(df, "data", raw_header=names)
    df.columns = names  # integer column names (0, 1, ...) are addressed as "0", "1" in the config
    _decode_text_bytes(df)
    try:
        hashed = pd.util.hash_pandas_object(df, index=False)
    except TypeError:  # unhashable cells (lists, dicts): hash their text; the data checks refuse them by name
        hashed = pd.util.hash_pandas_object(df.astype(str), index=False)
    digest = _sha256(hashed.values.tobytes())
    return {"train": df}, {"name": "memory", "kind": "memory", "files": {"memory": digest}}


def _label_vector(y) -> np.ndarray:
    """``y`` as one label per row; a one-hot or multi-column ``y`` is refused with the remedy."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        return y[:, 0]
    if y.ndim == 2:
        one_hot = np.issubdtype(y.dtype, np.number) and np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()
        what = "one-hot" if one_hot else "multi-column (multi-label or multi-output)"
        remedy = ("pass class ids, e.g. y.argmax(axis=1), or the class names" if one_hot else
                  "tfresp trains single-label classifiers: pass one label column")
        raise DataError(f"`data`: y is {what} with shape {y.shape}. Received: y of {y.ndim} "
                        f"dimensions. Remedy: {remedy}")
    if y.ndim != 1:
        raise DataError(f"`data`: y must hold one label per row. Received: shape={y.shape}. "
                        "Remedy: pass a 1-D array of labels")
    return y


def _frame_of_xy(x, y) -> pd.DataFrame:
    """``(X, y)`` as one frame with the label in column ``label``: a DataFrame ``X`` keeps its column names (so
    ``data.sensitive`` / ``data.features`` can name them); an array ``X`` gets ``x0..x{n-1}``."""
    y = _label_vector(y)
    if isinstance(x, pd.DataFrame):
        if "label" in [str(c) for c in x.columns]:
            raise DataError("`data`: X already has a column named 'label', the name tfresp gives "
                            "y. Received: (DataFrame, y). Remedy: rename that column, or pass one DataFrame with "
                            "data.label naming its label column")
        if len(x) != len(y):
            raise DataError(f"`data`: X and y have different numbers of rows. Received: X of {len(x)} rows, y of "
                        f"{len(y)}. Remedy: pass one label per row of X")
        df = x.reset_index(drop=True).copy()
        df.columns = [str(c) for c in df.columns]
        df["label"] = y
        return df
    x = np.asarray(x)
    if x.dtype.names and x.ndim == 1:  # a structured array: a table whose fields are its columns (checked there)
        return _frame_of_xy(pd.DataFrame.from_records(x), y)
    if x.ndim != 2:
        raise DataError(f"`data`: X must be 2-D (rows, features). Received: shape={x.shape}. Remedy: reshape X "
                        "to (rows, features), e.g. X.reshape(len(X), -1)")
    if len(x) != len(y):
        raise DataError(f"`data`: X and y have different numbers of rows. Received: X of {len(x)} rows, y of "
                        f"{len(y)}. Remedy: pass one label per row of X")
    df = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    df["label"] = y
    return df


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


def reads_file(source: str, memory=None) -> bool:
    """:func:`load_source` reads the rows from a file for this call (fresh frames nobody else holds), not from
    the caller's memory, an embedded or cached dataset."""
    return memory is None and source != "adult" and source.split(":", 1)[0] != "digits" and \
        not source.startswith("tfds:")


def load_source(source: str, fmt: str = "auto", memory=None, delimiter=None, encoding=None, with_counts=True):
    if memory is not None:
        return load_memory(memory)
    if source == "adult":
        return load_adult()
    if source.split(":", 1)[0] == "digits":
        from tfresp.data.digits import load_digits

        return load_digits(source)
    if source.startswith("tfds:"):
        return load_tfds(source[5:])
    return load_file(source, fmt, delimiter=delimiter, encoding=encoding, with_counts=with_counts)


def _sep_and_header(text: str, delimiter, notes: dict):
    """``(sep, header)``: the given or sniffed delimiter (noted when not a comma) and the first line's fields
    (``None`` when unreadable), for both CSV readers."""
    import csv

    sep = delimiter or _sniff_delimiter(text)
    if sep != ",":
        notes["delimiter"] = sep
    try:
        header = next(csv.reader(io.StringIO(text), delimiter=sep))
    except (StopIteration, csv.Error):
        header = None
    return sep, header


#: a column past the header's last: a data row with more fields than the header fills it
_EXTRA = "\x00tfresp: fields past the header"


def _read_csv(src, sep: str, header, **kw):
    """``pd.read_csv(src(), sep=sep, **kw)`` with one more column than the header, :data:`_EXTRA`, which a data row
    with more fields than the header fills (:class:`_ExtraFields` refuses it). Without it pandas makes the first
    column the index when the first data row has one field more (every value moves one column left) and its
    chunked reader drops the extra fields of a chunk's first row. ``header``: the first line's fields (a blank or
    empty-fields first line: pandas finds the header itself, without the extra column)."""
    if not "".join(header or []).strip():  # a blank (or whitespace) first line: pandas skips it to the header
        return pd.read_csv(src(), sep=sep, index_col=False, **kw)
    enc = {"encoding": kw["encoding"]} if "encoding" in kw else {}
    names = list(pd.read_csv(src(), sep=sep, nrows=0, index_col=False, **enc).columns)
    return pd.read_csv(src(), sep=sep, header=None, skiprows=1, names=names + [_EXTRA], index_col=False, **kw)


class _ExtraFields:
    """Counts the data rows with more fields than the header over the frames (chunks) it is given."""

    def __init__(self):
        self.rows, self.first, self.seen = 0, None, 0

    def pop(self, df: pd.DataFrame) -> None:
        extra = df.pop(_EXTRA) if _EXTRA in df.columns else None
        if extra is not None:
            bad = np.flatnonzero(extra.notna().to_numpy())
            if len(bad) and self.first is None:
                self.first = self.seen + int(bad[0]) + 1
            self.rows += len(bad)
        self.seen += len(df)

    def check(self, field: str, source, sep: str, columns: int) -> None:
        if self.rows:
            raise DataError(f"`{field}`: {self.rows} data row(s) have more fields than the header's {columns} (the "
                            f"first: data row {self.first}); their values would be dropped or moved into other "
                            f"columns. Received: source={source!r}, delimiter={sep!r}. Remedy: name every column in "
                            "the header, or remove the extra delimiters from those rows (quote a field that holds "
                            "the delimiter)")


def _text_again(df: pd.DataFrame, src, sep: str) -> None:
    """Columns of text and non-text values (in place) read again as text. pandas types a file in pieces of rows
    (``low_memory``): a column of numbers and empty cells in one piece and of text in another holds the float
    ``1.0`` and the string ``"1"`` for one value ``1`` (two categories). The whole file typed at once
    (``low_memory=False``) would need the tokens of every row at the same time."""
    mixed = [c for c in df.columns if df[c].dtype == object
             and pd.api.types.infer_dtype(df[c], skipna=True).startswith("mixed")]
    if mixed:
        names = list(df.columns)
        pos = sorted(names.index(c) for c in mixed)
        again = pd.read_csv(src(), sep=sep, usecols=pos, dtype=str, index_col=False)
        for k, i in enumerate(pos):
            df[names[i]] = again.iloc[:, k].to_numpy()


def _drop_trailing_empty(df: pd.DataFrame, header, notes: dict):
    """A trailing delimiter on every line makes an unnamed, empty last column: not data; drop it (with a warning)."""
    if header is not None and len(header) == len(df.columns):
        empty = [i for i, h in enumerate(header) if not h.strip() and df.iloc[:, i].isna().all()]
        if empty:
            df = df.drop(columns=[df.columns[i] for i in empty])
            header = [h for i, h in enumerate(header) if i not in empty]
            notes.setdefault("warnings", []).append(f"dropped {len(empty)} unnamed empty column(s) (a delimiter at "
                                                    "the end of the lines)")
    return df, header
