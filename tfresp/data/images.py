"""Image data as a ``kind="image"`` DataBundle (the source: :mod:`tfresp.data.digits`; the splits:
:mod:`tfresp.data.split`; a user test file, ``data.split.test: path.jsonl``, holds ``image`` and ``label``).

The :class:`ImagePreprocessor` has the interface of
:class:`~tfresp.data.preprocess.TabularPreprocessor` (``transform``, ``input_signature``,
``frame_to_inputs``, ``transform_frame``, ``save``/``load``) so the SavedModel export serves raw
images: ``serving_default(image=float32[N, 8, 8] in 0..16)``.

Example:
    >>> cfg = tfresp.load_config({"data": {"source": "digits:0-4", "label": "label"}, "model": {"kind": "cnn"}})
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np
import pandas as pd
import tensorflow as tf

from tfresp.data.bundle import DataBundle, Split, require_columns
from tfresp.data.digits import (DIGITS_CITATION, IMAGE_SOURCES, is_image_source, load_digits,  # noqa: F401
                                parse_label_subset)
from tfresp.data.preprocess import read_spec, write_spec
from tfresp.errors import DataError

#: the label column of image sources
IMAGE_LABEL = "label"


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
        # times the float32 reciprocal, not "/ scale": the graph optimizer rewrites a division by a constant into
        # this, so eager (training, report) and the serving graph would differ by an ulp (see preprocess.py)
        x = tf.cast(inputs[self.column], tf.float32) * np.float32(1.0 / np.float32(self.scale))
        x = tf.reshape(x, [-1, self.height, self.width, self.channels])
        return tf.clip_by_value(x, 0.0, 1.0)

    def frame_to_inputs(self, df: pd.DataFrame) -> Dict[str, np.ndarray]:
        if self.column not in df.columns:
            raise DataError(f"Invalid value for `data`: column {self.column!r} is missing from the rows to encode")
        # a nested array read from Parquet is an object array of rows: tolist() makes it one numeric array
        arr = np.stack([np.asarray(v.tolist() if isinstance(v, np.ndarray) and v.dtype == object else v,
                                   dtype=np.float32) for v in df[self.column]]) if len(df) else \
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


def prepare_images(config, parts, info):
    """Encode split frames (:class:`~tfresp.data.split.Frames`: test and validation splits and ``max_rows``
    training rows, stratified and seeded, by :mod:`tfresp.data.split`) into an image :class:`DataBundle`."""
    dc = config.data
    label = IMAGE_LABEL
    if dc.label not in (None, label):
        raise DataError(f"Invalid value for `data.label`: image sources name their label column 'label'. "
                        f"Received: label={dc.label!r}")
    if dc.sensitive:
        raise DataError("Invalid value for `data.sensitive`: the digits image source has no sensitive attributes")
    train_df, val_df, test_df = parts.train, parts.validation, parts.test
    if parts.test_split:
        info = {**info, "test_split": parts.test_split}
    for name, df in (("data.source", train_df), ("data.split.test", test_df)):
        require_columns(df, ["image", label], name)
    h, w, c = info.get("image_shape", [8, 8, 1])
    pre = ImagePreprocessor(h, w, c, scale=float(info.get("raw_range", [0, 1])[1]))
    classes = sorted(train_df[label].astype(str).unique().tolist(), key=lambda s: (len(s), s))
    if len(classes) < 2:
        raise DataError(f"Invalid value for `data.source`: a single class {classes} in the training split")
    for name, df in (("test", test_df), ("validation", val_df)):
        unseen = sorted(set(df[label].astype(str)) - set(classes)) if df is not None else []
        if unseen:
            raise DataError(f"Invalid value in `data.label`: the {name} split has labels {unseen[:5]} never seen "
                            f"in training (training classes: {classes[:10]}). Remedy: make every class appear in "
                            "training")
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
