"""Image data: scikit-learn's bundled handwritten digits (offline) as a ``kind="image"`` DataBundle.

``data.source: digits`` loads the 1,797 8x8 grey-level digits bundled with scikit-learn
(Alpaydin & Kaynak 1998, UCI "Optical Recognition of Handwritten Digits"; pixel values 0..16).
A label subset is selected with ``digits:0-4`` or ``digits:5,6,7,8,9`` (used for supervised
pretraining on one label set and fine-tuning on another).

The :class:`ImagePreprocessor` has the interface of
:class:`~tfresp.data.preprocess.TabularPreprocessor` (``transform``, ``input_signature``,
``frame_to_inputs``, ``transform_frame``, ``save``/``load``) so the SavedModel export serves raw
images: ``serving_default(image=float32[N, 8, 8] in 0..16)``.

Example:
    >>> cfg = tfresp.load_config({"data": {"source": "digits:0-4", "label": "label"}, "model": {"kind": "cnn"}})
"""
from __future__ import annotations

import hashlib

from pathlib import Path
from typing import Dict, List

import numpy as np
import pandas as pd
import tensorflow as tf

from tfresp.data.preprocess import read_spec, write_spec
from tfresp.errors import DataError

DIGITS_CITATION = ("Alpaydin, E. & Kaynak, C. (1998). Optical Recognition of Handwritten Digits. UCI Machine "
                   "Learning Repository. https://doi.org/10.24432/C50P49 (CC BY 4.0); copy bundled with scikit-learn")
IMAGE_SOURCES = ("digits",)


def is_image_source(source: str) -> bool:
    """Whether ``data.source`` names a built-in image source (``digits`` or ``digits:<labels>``)."""
    return isinstance(source, str) and source.split(":", 1)[0] in IMAGE_SOURCES


def parse_label_subset(spec: str) -> List[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"5,7,9"`` -> [5, 7, 9]."""
    labels = set()
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(p) for p in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                labels.update(range(lo, hi + 1))
            else:
                labels.add(int(part))
        except ValueError:
            raise DataError(f"Invalid value for `data.source`: cannot parse the label subset {spec!r}; "
                            "expected e.g. 'digits:0-4' or 'digits:5,6,7'") from None
    if len(labels) < 2 or not labels <= set(range(10)):
        raise DataError(f"Invalid value for `data.source`: the label subset {spec!r} must name at least two "
                        "digits between 0 and 9")
    return sorted(labels)


def load_digits(source: str = "digits"):
    """Frames (``image`` column of 8x8 float arrays in 0..16, ``label`` column) and provenance info."""
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    images = bunch.images.astype(np.float32)
    labels = bunch.target.astype(np.int64)
    name, _, subset = source.partition(":")
    keep = parse_label_subset(subset) if subset else list(range(10))
    sel = np.isin(labels, keep)
    images, labels = images[sel], labels[sel]
    df = pd.DataFrame({"image": list(images), "label": labels.astype(str)})
    digest = hashlib.sha256(bunch.images.astype(np.float32).tobytes()).hexdigest()
    info = {"name": source, "kind": "embedded", "modality": "image", "citation": DIGITS_CITATION,
            "license": "CC-BY-4.0", "files": {"sklearn.datasets.load_digits": digest},
            "labels_kept": [str(k) for k in keep], "image_shape": [8, 8, 1], "raw_range": [0.0, 16.0]}
    return {"train": df}, info


class ImagePreprocessor(tf.Module):
    """Scale raw pixel intensities to ``[0, 1]`` and add the channel axis, inside the TF graph.

    Args:
        height, width, channels: image shape the model expects.
        scale: the raw maximum intensity (16 for sklearn digits, 255 for 8-bit images).
        column: the raw input column / serving argument name.
    """

    def __init__(self, height: int, width: int, channels: int = 1, scale: float = 1.0, column: str = "image"):
        super().__init__(name="image_preprocessor")
        self.height, self.width, self.channels = int(height), int(width), int(channels)
        self.scale = float(scale)
        self.column = column

    @property
    def columns(self) -> List[str]:
        return [self.column]

    @property
    def valid_range(self):
        """The range of encoded (model-input) pixels: attacks clip to it."""
        return 0.0, 1.0

    def _raw_shape(self):
        base = [None, self.height, self.width]
        return base if self.channels == 1 else base + [self.channels]

    def input_signature(self) -> Dict[str, tf.TensorSpec]:
        return {self.column: tf.TensorSpec(self._raw_shape(), tf.float32, name=self.column)}

    def transform(self, inputs: Dict[str, tf.Tensor]) -> tf.Tensor:
        """Raw images (0..scale) -> float32 ``[batch, H, W, C]`` in ``[0, 1]``."""
        x = tf.cast(inputs[self.column], tf.float32) / self.scale
        x = tf.reshape(x, [-1, self.height, self.width, self.channels])
        return tf.clip_by_value(x, 0.0, 1.0)

    def frame_to_inputs(self, df: pd.DataFrame) -> Dict[str, np.ndarray]:
        if self.column not in df.columns:
            raise DataError(f"Invalid value for `data`: column {self.column!r} is missing from the rows to encode")
        arr = np.stack([np.asarray(v, dtype=np.float32) for v in df[self.column]]) if len(df) else \
            np.zeros([0] + self._raw_shape()[1:], np.float32)
        expected = tuple(self._raw_shape()[1:])
        if arr.shape[1:] != expected:
            raise DataError(f"Invalid value for `data`: images have shape {arr.shape[1:]}, expected {expected}")
        return {self.column: arr}

    def transform_frame(self, df: pd.DataFrame) -> np.ndarray:
        return self.transform({k: tf.constant(v) for k, v in self.frame_to_inputs(df).items()}).numpy()

    def to_json(self) -> dict:
        return {"type": "image", "height": self.height, "width": self.width, "channels": self.channels,
                "scale": self.scale, "column": self.column}

    def save(self, directory: Path) -> Path:
        return write_spec(directory, "image.json", self.to_json())

    @classmethod
    def load(cls, directory: Path) -> "ImagePreprocessor":
        spec = read_spec(directory, "image.json")
        return cls(spec["height"], spec["width"], spec["channels"], spec["scale"], spec["column"])


def prepare_images(config, frames, info):
    """Split (stratified, seeded), subsample (``data.max_rows``) and encode an image source."""
    from tfresp.data.dataset import DataBundle, Split, _stratified_split

    dc = config.data
    label = "label"
    if dc.label not in (None, label):
        raise DataError(f"Invalid value for `data.label`: image sources name their label column 'label'. "
                        f"Received: label={dc.label!r}")
    if dc.sensitive:
        raise DataError("Invalid value for `data.sensitive`: the digits image source has no sensitive attributes")
    train_df = frames["train"]
    if "test" in frames and dc.split.test == "official":
        test_df = frames["test"]
    else:
        frac = 0.2 if dc.split.test == "official" else float(dc.split.test)
        train_df, test_df = _stratified_split(train_df, label, frac, config.seed)
        info = {**info, "test_split": f"stratified {frac:.0%} of the source (seed {config.seed})"}
    val_df = None
    if dc.split.validation > 0:
        train_df, val_df = _stratified_split(train_df, label, dc.split.validation, config.seed + 1)
    if dc.max_rows and len(train_df) > dc.max_rows:
        # Stratified subsample so a small-data fine-tuning run still sees every class.
        train_df, _ = _stratified_split(train_df, label, 1.0 - dc.max_rows / len(train_df), config.seed + 2)
    h, w, c = info.get("image_shape", [8, 8, 1])
    pre = ImagePreprocessor(h, w, c, scale=float(info.get("raw_range", [0, 1])[1]))
    classes = sorted(train_df[label].astype(str).unique().tolist(), key=lambda s: (len(s), s))
    if len(classes) < 2:
        raise DataError(f"Invalid value for `data.source`: a single class {classes} in the training split")
    index = {k: i for i, k in enumerate(classes)}

    def make(df):
        if df is None:
            return None
        df = df.reset_index(drop=True)
        return Split(x=pre.transform_frame(df), y=df[label].astype(str).map(index).to_numpy(np.int64),
                     frame=df, groups={})

    return DataBundle(train=make(train_df), validation=make(val_df), test=make(test_df), classes=classes,
                      feature_columns=[pre.column], sensitive=[], preprocessor=pre, info=info, kind="image",
                      extra={"summary": {"image_shape": [h, w, c], "pixel_range": [0.0, 1.0]}})
