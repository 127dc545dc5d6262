"""Resolve ``config.data`` into a :class:`DataBundle`: split, validated, encoded, ready for tf.data."""
from __future__ import annotations

import warnings
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from tfresp.data import checks, split
from tfresp.data.bundle import DataBundle, Split
from tfresp.data.labels import order_classes
from tfresp.data.labels_compact import str_labels
from tfresp.data.preprocess import TabularPreprocessor, column_kind
from tfresp.data.serving_names import collisions, serving_layout
from tfresp.data.sources import load_source, reads_file
from tfresp.data.stream import plain_index, release_memory, row_gather
from tfresp.errors import DataError


def _categorical_missing(df: pd.DataFrame, cols: List[str]):
    """Missing categorical values become the category ``<missing>`` (when not imputed)."""
    numeric = set(df.select_dtypes(include="number").columns) - set(df.select_dtypes(include="bool").columns)
    for c in cols:
        if c not in numeric and df[c].isna().any():
            df[c] = df[c].astype(object).where(~df[c].isna(), "<missing>")


def _fit_imputation(config, train_df: pd.DataFrame, frames, features, problems) -> Dict[str, dict]:
    """``data.missing: impute``: fill values fitted on the training split only (or declared, public).

    Under DP (``config.privacy``) a median or mode of the private training rows would be an
    unaccounted release baked into the served model, so the fill values must be declared in
    ``data.impute_values``.
    """
    dc = config.data
    declared = dict(dc.impute_values or {})
    needed = [c for c in features if any(checks.missing_mask(df[c]).any() for df in frames if df is not None)]
    if config.privacy is not None:
        undeclared = [c for c in needed if c not in declared]
        if undeclared:
            problems.add("data.impute_values", "under DP (privacy on), imputed columns need declared, public fill "
                         "values: a median or most frequent value fitted on the private training rows would be "
                         "released in the model without being accounted", f"columns without one: {undeclared}",
                         "declare data.impute_values: {column: value} from public knowledge, or clean the data")
            return {}
    fills = {}
    for c in needed:
        s = train_df[c]
        numeric = column_kind(s) == "numeric"
        if c in declared:
            value, how = declared[c], "declared in data.impute_values"
            if numeric and not isinstance(value, (int, float)):
                problems.add(f"data.impute_values.{c}", f"column {c!r} is numeric; the fill value must be a number",
                             repr(value), "declare a number")
                continue
        elif numeric:
            present = s.astype("float64").dropna()
            if present.empty:
                problems.add("data", f"column {c!r} has no values in the training split to impute from", None,
                             "drop the column or declare data.impute_values")
                continue
            value, how = float(present.median()), "median of the training split"
        else:
            present = s[~checks.missing_mask(s)].astype(str)
            if present.empty:
                problems.add("data", f"column {c!r} has no values in the training split to impute from", None,
                             "drop the column or declare data.impute_values")
                continue
            value, how = str(present.value_counts().sort_index(kind="stable").idxmax()), \
                "most frequent value of the training split"
        fills[c] = {"value": float(value) if numeric else str(value), "from": how}
    return fills


def _apply_imputation(df: Optional[pd.DataFrame], fills: Dict[str, dict]):
    if df is None:
        return
    for c, f in fills.items():
        mask = checks.missing_mask(df[c])
        if isinstance(f["value"], float) and column_kind(df[c]) == "numeric":
            df[c] = df[c].astype("float64").where(~mask, f["value"])
        else:
            df[c] = df[c].astype(object).where(~mask, f["value"])


def _feature_columns(config, names: List[str], frames: Dict[str, pd.DataFrame], notes: dict,
                     problems: checks.Problems) -> List[str]:
    """The feature columns: ``data.features``, or every column but the label, text, sensitive attributes and
    ID-like columns (measured, see :func:`checks.id_like_columns`; a warning names each one excluded).

    Under DP an ID-like column is refused instead: which features the model uses must not be chosen from the
    private rows outside the budget, so the user lists them in ``data.features``.
    """
    dc = config.data
    if dc.text:
        return []  # a text model reads only the text column
    if dc.features is not None:
        return [c for c in dc.features if c in names and all(c in df.columns for df in frames.values())]
    excluded = {dc.label} | (set() if dc.use_sensitive else set(dc.sensitive))
    features = [c for c in names if c not in excluded and all(c in df.columns for df in frames.values())]
    ids = checks.id_like_columns(frames["train"], features)
    if ids and config.privacy is not None:
        problems.add("data.features", f"column(s) {sorted(ids)} look like row identifiers (unique per row); under "
                     "DP tfresp does not choose the features from the private rows", None,
                     "list the feature columns in data.features (with or without those columns)")
        return features
    for c, why in ids.items():
        notes["warnings"].append(f"column {c!r} looks like a row identifier ({why}) and is not used as a feature; "
                                 "list it in data.features to use it")
    if ids:
        notes["excluded_id_like"] = sorted(ids)
    return [c for c in features if c not in ids]


def _check_frames(config, frames: Dict[str, pd.DataFrame], problems: checks.Problems) -> dict:
    """Checks on the whole data before splitting (repairs in place); returns notes for the report.

    ``notes["features"]`` holds the feature columns (see :func:`_feature_columns`).
    """
    dc = config.data
    label = dc.label
    names = list(dict.fromkeys(str(c) for df in frames.values() for c in df.columns))
    checks.check_names(config, names, problems)
    both = pd.concat([df for df in frames.values()], ignore_index=True) if len(frames) > 1 else frames["train"]
    checks.check_privileged_groups(config, both, problems)
    notes = {"warnings": []}
    features = _feature_columns(config, names, frames, notes, problems)
    used = features + [c for c in [label] if c in names]
    checks.check_types(both, used, problems)
    checks.check_datetime(both, features, dc.categories, problems)
    if config.privacy is None:  # counts of the private rows stay out of a DP run's report
        notes["warnings"] += checks.high_cardinality(frames["train"], features, dc.categories)
        notes["warnings"] += checks.undeclared_values(frames["train"], features, dc.categories)
    parsed = {}
    for df in frames.values():
        parsed.update(checks.parse_numeric_text(df, [c for c in features if c in df.columns], problems))
    if parsed:
        notes["parsed_numeric"] = parsed
    if label in names:
        both = pd.concat([df for df in frames.values()], ignore_index=True) if len(frames) > 1 else frames["train"]
        notes["warnings"] += checks.check_label(both, label, dc.min_class_rows, problems, frames["train"],
                                                with_counts=config.privacy is None)
    checks.check_missing(list(frames.values()), features, dc.missing, problems)
    checks.check_extreme(list(frames.values()), features, dc.numeric_ranges, problems)
    sens = list(dc.sensitive) + list((config.fairness.sensitive or []) if config.fairness else [])
    for df in frames.values():
        for w in checks.fill_sensitive(df, list(dict.fromkeys(sens)), with_counts=config.privacy is None):
            if w not in notes["warnings"]:
                notes["warnings"].append(w)
    if dc.text:
        for df in frames.values():
            checks.check_text(df, dc.text, problems)
    notes["features"] = features
    return notes


def _load(config, memory):
    """Step 1: ``(frames, info, split_mode)``: the source read, a user test file attached, de-identified."""
    dc = config.data
    frames, info = load_source(dc.source, dc.format, memory, delimiter=dc.delimiter, encoding=dc.encoding,
                               with_counts=config.privacy is None)  # counts of private rows stay out of the report
    # a user test file is attached first, so de-identification applies to it as to the source
    frames, info, split_mode = split.attach_test_file(frames, info, dc.split.test, dc.format,
                                                      owned=reads_file(dc.source, memory), delimiter=dc.delimiter,
                                                      encoding=dc.encoding)
    if dc.deidentify is not None:
        from tfresp.privacy.deid import deidentify_frames

        frames, deid_report = deidentify_frames(frames, dc)
        info = {**info, "deidentification": deid_report}
    return frames, info, split_mode


def _prepare_images(config, frames, info, split_mode, budget) -> DataBundle:
    from tfresp.data.images import IMAGE_LABEL, prepare_images

    if budget is not None:  # images are scaled by the source's declared raw range: no statistics
        budget.declare_public("preprocessing/image.json", "the source's declared raw range (no statistics)")
        budget.declare_not_covered("data.classes", "the label values seen in the training split (output width)")
    # images: max_rows counts training rows (few-shot runs keep the whole test split)
    return prepare_images(config, _split(config, frames, IMAGE_LABEL, split_mode, "train"), info)


def _validate(config, frames, info) -> dict:
    """Step 2: every check on the whole data (one :class:`DataError` naming every problem); warnings shown."""
    problems = checks.Problems()
    notes = _check_frames(config, frames, problems)
    problems.raise_if_any()
    notes["warnings"] = list(info.pop("warnings", [])) + notes["warnings"]
    for w in notes["warnings"]:
        warnings.warn(f"tfresp data: {w}", stacklevel=3)
    return notes


def _prepare_text(config, frames, info, split_mode, notes, budget, preprocessor) -> DataBundle:
    from tfresp.data.text import check_text_frames, prepare_text

    label = None if config.task == "mlm" else config.data.label
    check_text_frames(config, frames, label)
    bundle = prepare_text(config, _split(config, frames, label, split_mode), info, budget, preprocessor)
    bundle.extra.setdefault("summary", {}).update({k: v for k, v in notes.items() if v and k != "features"})
    return bundle


def _check_split_features(config, parts: split.Frames, features: List[str]) -> None:
    """Step 4: there are features, the label is not one of them, no split is empty."""
    dc, problems = config.data, checks.Problems()
    if not features:
        problems.add("data.features", "no feature columns left after removing the label and sensitive attributes",
                     None, "add feature columns or set data.use_sensitive: true")
    if dc.label in features:
        problems.add("data.features", f"the label column {dc.label!r} is also a feature", f"features={features}",
                     "remove it from data.features")
    checks.check_splits({"train": parts.train, "validation": parts.validation, "test": parts.test}, problems)
    problems.raise_if_any()


def _classes(config, parts: split.Frames, problems: checks.Problems) -> List[str]:
    """Step 5: the classes (declared or seen in training); every split's labels and groups are checked."""
    dc, label, train_df = config.data, config.data.label, parts.train
    # str_labels: the values of astype(str) without a str object per row (labels_compact.py)
    classes = order_classes(sorted(pd.unique(str_labels(train_df[label])).tolist()), dc.positive_class)
    seen = set(classes)
    declared_classes = (dc.categories or {}).get(label)
    if declared_classes is not None:
        unknown = sorted(seen - {str(v) for v in declared_classes})
        if unknown:  # named with the other problems below
            problems.add(f"data.categories.{label}", f"training labels {unknown[:5]} are not declared",
                         list(declared_classes)[:10], "declare every class")
        classes = order_classes([str(v) for v in declared_classes], dc.positive_class)
    if len(classes) < 2:
        problems.add("data.label", f"column {label!r} has a single class {classes} in the training split; "
                     "classification needs at least two", None, "check the label column")
    for name, df in (("test", parts.test), ("validation", parts.validation)):
        if df is None:
            continue
        unseen = sorted(set(pd.unique(str_labels(df[label])).tolist()) - set(classes) - seen)
        if unseen:
            problems.add("data.label", f"the {name} split has labels {unseen[:5]} never seen in training "
                         f"(training classes: {classes[:10]})", None, "make every class appear in training")
    for attr in dc.sensitive:
        groups = pd.unique(str_labels(train_df[attr]))
        if len(groups) < 2:
            problems.add("data.sensitive", f"attribute {attr!r} has a single group {groups.tolist()} in the "
                         "training split; group metrics need at least two", None, "audit another attribute")
    return classes


def _fit_preprocessor(config, train_df, features, classes, fills, budget, preprocessor):
    """Step 7: ``(preprocessor, extra)``: the saved one, a DP fit (under privacy) or a plain fit."""
    dc, extra = config.data, {}
    if preprocessor is not None:
        pre = preprocessor
    elif budget is not None:
        from tfresp.data.dp_tabular import fit_dp, preprocessing_epsilon

        budget.resolve_delta(len(train_df))
        pre, dp_summary = fit_dp(train_df, features, dc.categories, dc.numeric_ranges, budget,
                                 preprocessing_epsilon(config.privacy), label=dc.label)
        missing = sorted(set(classes) - set(dp_summary["classes"]))
        if missing:
            raise DataError(f"Invalid value in `data.label`: classes {missing} are held by too few training rows to "
                            f"pass the DP threshold ({dp_summary['threshold']:.0f} rows). Remedy: declare the "
                            f"classes in data.categories.{dc.label}, raise privacy.preprocessing_epsilon, or drop them")
        if dp_summary["class_counts"] is not None:  # in the order of `classes` (the DP release is sorted by label;
            # data.positive_class or a declared order can put them otherwise): class weights and label balance
            noisy = dict(zip(dp_summary["classes"], dp_summary["class_counts"]))
            extra["class_counts"] = np.asarray([noisy[c] for c in classes], np.float64)
        extra["summary"] = {"preprocessing": {k: v for k, v in dp_summary.items() if k != "class_counts"}}
    else:
        pre = TabularPreprocessor.fit(train_df, features, dc.categories, dc.numeric_ranges)
    if fills:
        for col in pre.spec:
            if col["name"] in fills:
                col["impute"] = fills[col["name"]]["value"]
        pre = TabularPreprocessor(pre.spec)
    return pre, extra


def prepare(config, memory=None, budget=None, preprocessor=None, compact: bool = False) -> DataBundle:
    """Load, de-identify, split, validate and encode the data described by ``config.data``.

    Every problem found in the data is collected and raised as one :class:`DataError` before
    training (see :mod:`tfresp.data.checks`). Steps: load -> validate -> split -> features -> classes ->
    imputation -> preprocessing -> serving names -> bundle.

    ``budget`` (a :class:`~tfresp.privacy.budget.PrivacyBudget`, DP runs only): every statistic fitted on the
    private training split (vocabularies, scaling) is either public/declared or a DP release spent there.
    ``preprocessor``: a finished run's saved preprocessing (:func:`saved_preprocessor`), used as is instead of
    fitting one (commands on a finished run must encode exactly as the run did, and must not re-fit on the
    private rows what a DP run released only through its budget).
    ``compact`` (the run builder): a tabular split's ``x`` is a :class:`~tfresp.data.compact.CompactRows`
    (codes + numerics, expanded per batch or block of rows) instead of the dense matrix.
    """
    dc = config.data
    frames, info, split_mode = _load(config, memory)
    if info.get("modality") == "image":
        return _prepare_images(config, frames, info, split_mode, budget)
    notes = _validate(config, frames, info)
    if dc.text:
        return _prepare_text(config, frames, info, split_mode, notes, budget, preprocessor)
    label, features = dc.label, notes.pop("features")
    parts = _split(config, frames, label, split_mode)
    frames = None  # the splits are copies: free the source rows before encoding (bounded memory per row)
    if parts.test_split:
        info = {**info, "test_split": parts.test_split}
    _check_split_features(config, parts, features)
    problems = checks.Problems()
    classes = _classes(config, parts, problems)
    splits = (parts.train, parts.validation, parts.test)
    fills = _fit_imputation(config, parts.train, splits, features, problems) if dc.missing == "impute" else {}
    problems.raise_if_any()
    for df in splits:
        _apply_imputation(df, fills)
        if df is not None:
            _categorical_missing(df, features)
    _check_declared(parts.train, features, dc)
    pre, extra = _fit_preprocessor(config, parts.train, features, classes, fills, budget, preprocessor)
    index = {c: i for i, c in enumerate(classes)}

    def make(df):
        # in a run the splits are kept compact (codes + numerics, ~1/10 of the dense matrix for Adult); batches,
        # predictions and audit samples expand the rows they take (tfresp/data/compact.py)
        if df is None:
            return None
        release_memory()  # the temporaries of the steps before (whole-column copies) go back to the system
        # labels and groups as shared strings (labels_compact.py): the same values as astype(str), 8 bytes a row
        y = pd.Series(str_labels(df[label])).map(index).to_numpy(np.int64)
        return Split(x=pre.transform_compact(df) if compact else pre.transform_frame(df), y=y,
                     frame=plain_index(df), groups={a: str_labels(df[a]) for a in dc.sensitive})

    summary = {k: v for k, v in notes.items() if v}
    if fills:
        summary["imputation"] = fills
    summary["serving_inputs"] = _serving_names(pre, config)
    return DataBundle(train=make(parts.train), validation=make(parts.validation), test=make(parts.test),
                      classes=classes, feature_columns=features, sensitive=list(dc.sensitive), preprocessor=pre,
                      info=info, extra={**extra, "summary": {**summary, **extra.get("summary", {})}})


def _split(config, frames, label, mode, max_rows_of="source") -> split.Frames:
    dc = config.data
    return split.split_frames(frames, label, mode, dc.split.validation, dc.max_rows, config.seed, max_rows_of)


def saved_preprocessor(run_dir):
    """The preprocessing saved with a finished run (``RUN/preprocessing``), or ``None`` when it has none."""
    from pathlib import Path

    directory = Path(run_dir) / "preprocessing"
    if (directory / "tabular.json").is_file():
        return TabularPreprocessor.load(directory)
    if (directory / "text.json").is_file():
        from tfresp.data.text import TextPreprocessor

        return TextPreprocessor.load(directory)
    return None


def _check_declared(train_df: pd.DataFrame, features: List[str], dc) -> None:
    """``data.categories`` / ``data.numeric_ranges`` must name feature columns of the right kind."""
    problems = []
    for key, decl in (("data.categories", dc.categories or {}), ("data.numeric_ranges", dc.numeric_ranges or {})):
        for col in decl:
            if col not in features and not (key == "data.categories" and col == dc.label):
                problems.append(f"`{key}.{col}`: not a feature column. Received: {col!r}. "
                                f"Remedy: use one of {features[:30]}")
            elif key == "data.numeric_ranges" and column_kind(train_df[col]) != "numeric":
                problems.append(f"`{key}.{col}`: the column is not numeric. Received: dtype "
                                f"{train_df[col].dtype}. Remedy: declare it in data.categories")
    both = sorted(set(dc.categories or {}) & set(dc.numeric_ranges or {}))
    if both:
        problems.append(f"`data.categories`: columns {both} are also in data.numeric_ranges. Remedy: declare "
                        "each column once")
    if problems:
        raise DataError("Invalid declared preprocessing: " + " | ".join(problems))


def _serving_names(pre, config=None) -> dict:
    """Export feasibility, checked before training: the SavedModel input name of every column.

    Two columns that would be served under one name (``monthly income`` and ``monthly-income`` both become
    ``monthly_income``) are refused when the run exports a SavedModel: numbering one of them would make a
    served input whose meaning depends on the column order.
    """
    layout = serving_layout(pre)
    clash = collisions(layout["inputs"])
    if clash and config is not None and config.export.saved_model:
        shown = "; ".join(f"{cols} -> {name!r}" for name, cols in clash.items())
        raise DataError(f"`data.features`: columns would share one SavedModel input name (an input name holds "
                        f"only letters, digits and _). Received: {shown}. Remedy: rename one column of each pair "
                        "in the data, or leave one out with data.features")
    renamed = {raw: name for raw, name in layout["inputs"].items() if raw != name}
    return {"renamed": renamed, "packed_numeric_columns": len(layout["packed"]["columns"]) if layout["packed"] else 0}


def make_dataset(x, y, extras: Dict[str, np.ndarray], batch_size: int, shuffle: bool, seed: int,
                 drop_remainder: bool = False) -> tf.data.Dataset:
    """``(x, y, extras)`` batches with prefetch; ``extras`` always has ``sample_weight``.

    Shuffling permutes row *indices* (seeded, reshuffled every epoch, so a pipeline repeated and skipped
    to a step reproduces an uninterrupted run) and each batch is one gather, like Keras' own array
    adapter: shuffling whole ``(x, y, extras)`` elements one by one costs ~20% more CPU per epoch.
    """
    n = len(y)
    extras = dict(extras)
    extras.setdefault("sample_weight", np.ones(n, dtype=np.float32))
    gather = row_gather((x, y, extras))  # rows gathered from the arrays: no tensor copy of them (stream.py)
    ds = tf.data.Dataset.range(n)
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if isinstance(x, dict) and "attention_mask" in x:  # text: dynamic padding per batch
        from tfresp.data.text import trim_padding

        ds = ds.map(trim_padding, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
