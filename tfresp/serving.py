"""``tfresp.load(RUN)``: a finished run's served model, loaded with the ops it needs.

The SavedModel of a text run tokenizes raw strings inside the graph with ``tensorflow_text`` ops, which a
fresh ``tf.saved_model.load`` cannot find unless ``tensorflow_text`` was imported first. A plain
TensorFlow consumer (no tfresp installed) does::

    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (text runs only: registers the tokenizer ops)
    model = tf.saved_model.load("RUN/saved_model")
    probabilities = model.signatures["serving_default"](**inputs)["probabilities"]
"""
from __future__ import annotations

from pathlib import Path

from tfresp.errors import CheckpointError


def needs_tensorflow_text(run_dir) -> bool:
    """True when the run's SavedModel uses ``tensorflow_text`` ops (its config has ``data.text``)."""
    from tfresp.config import load_config

    return bool(load_config(Path(run_dir) / "config.yaml").data.text)


def load(run_dir):
    """Load the SavedModel a run serves (``RUN/saved_model``), importing the op libraries it needs.

    Args:
        run_dir: a finished tfresp run directory.

    Returns:
        The loaded SavedModel; ``.signatures["serving_default"]`` takes the inputs under their signature names
        (sanitized, wide numeric columns packed into ``numeric_features``) and returns ``probabilities``;
        ``.predict_rows(rows)`` takes raw rows (DataFrame or ``{raw column: values}``) and maps them.

    Example:
        >>> model = tfresp.load("runs/quickstart")
        >>> model.signatures["serving_default"](**{"age": tf.constant([39.0]), ...})["probabilities"]
    """
    root = Path(run_dir)
    path = root / "saved_model"
    if not (root / "config.yaml").is_file() or not (path / "saved_model.pb").is_file():
        raise CheckpointError(f"`run`: {str(root)!r} is not a finished tfresp run with a SavedModel (expected "
                              "config.yaml and saved_model/saved_model.pb). Received: run="
                              f"{str(run_dir)!r}. Remedy: fit with export.saved_model: true")
    if needs_tensorflow_text(root):
        try:
            import tensorflow_text  # noqa: F401  (registers the tokenizer ops the text SavedModel uses)
        except ModuleNotFoundError:
            raise CheckpointError("`run`: this text run's SavedModel needs the tensorflow-text package. Received: "
                                  f"run={str(run_dir)!r}. Remedy: pip install tensorflow-text") from None
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    # the signature's inputs carry sanitized names (``Annual Income ($)`` -> ``Annual_Income``) and, for wide
    # data, one packed ``numeric_features`` block: predict_rows takes the raw columns and maps them
    loaded.predict_rows = lambda rows: predict_rows(loaded, rows, imputes=_imputed_columns(root))
    return loaded


def _imputed_columns(root: Path):
    """The numeric columns whose missing values the served model fills (``data.missing: impute``); ``None``
    when the run has no tabular preprocessing to read it from."""
    import json

    spec = root / "preprocessing" / "tabular.json"
    if not spec.is_file():
        return None
    columns = json.loads(spec.read_text(encoding="utf-8")).get("columns", [])
    return {c["name"] for c in columns if c.get("kind") == "numeric" and "impute" in c}


def predict_rows(loaded, rows, imputes=None) -> dict:
    """``serving_default`` outputs (numpy) for raw rows: a DataFrame or ``{raw column name: values}``.

    Maps raw column names to the signature's sanitized input names and packs the numeric columns of wide
    data into ``numeric_features``, as recorded in the SavedModel's layout (``serving_inputs``).

    Example:
        >>> model = tfresp.load("runs/loans")
        >>> model.predict_rows({"Annual Income ($)": [52000.0], "loan amount": [900.0], ...})["probabilities"]
    """
    import numpy as np

    from tfresp.errors import DataError

    signature = loaded.signatures["serving_default"]
    outputs = {k: v.numpy() for k, v in signature(**rows_to_inputs(loaded, rows, imputes)).items()}
    bad = np.flatnonzero(~np.isfinite(outputs["probabilities"]).all(axis=1))
    if len(bad):  # a NaN input the model does not impute: no decision can be read from it
        raise DataError(f"`rows`: the model's probabilities are not finite for {len(bad)} row(s) (positions "
                        f"{bad[:10].tolist()}), from missing numeric values the run did not impute. Remedy: fill "
                        "those values, or train with data.missing: impute")
    return outputs


def rows_to_inputs(loaded, rows, imputes=None) -> dict:
    """``serving_default`` keyword arguments from raw rows (see :func:`predict_rows`).

    ``imputes``: the numeric columns the served model fills when missing; a missing value in another numeric
    column is refused (the model would return a decision computed from NaN). ``None``: not known, not checked.
    """
    import numpy as np
    import pandas as pd
    import tensorflow as tf

    from tfresp.data.sources import as_category_strings
    from tfresp.errors import DataError
    from tfresp.export.saved_model import load_layout, signature_inputs

    specs = loaded.signatures["serving_default"].structured_input_signature[1]
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(
        {k: np.asarray(v).reshape(-1) for k, v in dict(rows).items()})
    layout = load_layout(loaded)
    names = layout["inputs"] if layout else {k: k for k in specs}
    packed = list(layout["packed"]["columns"]) if layout and layout.get("packed") else []
    missing = [c for c in list(names) + packed if c not in frame.columns]
    if missing:
        raise DataError(f"`rows`: columns the served model needs are missing. Received: missing {missing[:20]}"
                        f"{' ...' if len(missing) > 20 else ''}. Remedy: pass the raw columns the run was trained "
                        "on (their original names)")
    columns, odd = {}, {}

    def numbers(raw):
        s = frame[raw]
        values = pd.to_numeric(s, errors="coerce")
        text = s[values.isna() & s.notna()]
        text = text[~text.astype(str).str.strip().isin(["", "nan", "NaN"])]
        if len(text):  # 'forty' is not a missing value: it is a wrong one
            odd[raw] = text.astype(str).unique()[:5].tolist()
        return values.to_numpy(np.float64)

    for raw, name in names.items():
        dtype = specs[name].dtype
        columns[raw] = (as_category_strings(frame[raw]).to_numpy().astype(object) if dtype == tf.string else
                        numbers(raw).astype(dtype.as_numpy_dtype))
    for c in packed:
        columns[c] = numbers(c).astype(np.float32)
    if odd:
        raise DataError(f"`rows`: numeric columns hold values that are not numbers. Received: {odd}. Remedy: send "
                        "numbers (a missing value as NaN/None)")
    if imputes is not None:
        holes = {raw: int(np.isnan(np.asarray(columns[raw], np.float64)).sum()) for raw in list(names) + packed
                 if raw not in imputes and raw in columns and np.asarray(columns[raw]).dtype.kind == "f"}
        holes = {k: v for k, v in holes.items() if v}
        if holes:
            raise DataError(f"`rows`: missing numeric values the served model does not impute (its answer would be "
                            f"computed from NaN). Received: {holes}. Remedy: fill them, or train with "
                            "data.missing: impute")
    return signature_inputs(layout, columns)
