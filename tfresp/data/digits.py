"""scikit-learn's bundled handwritten digits (offline) as an image source: ``data.source: digits[:labels]``.

``data.source: digits`` loads the 1,797 8x8 grey-level digits bundled with scikit-learn
(Alpaydin & Kaynak 1998, UCI "Optical Recognition of Handwritten Digits"; pixel values 0..16).
A label subset is selected with ``digits:0-4`` or ``digits:5,6,7,8,9`` (used for supervised
pretraining on one label set and fine-tuning on another). Encoding is :mod:`tfresp.data.images`.
"""
from __future__ import annotations

import hashlib
from typing import List

import numpy as np
import pandas as pd

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
