"""Adapter around the ``lime`` package (Ribeiro, Singh & Guestrin 2016, "Why should I trust you?").

Every version quirk of ``lime`` lives here:

* an explainer's ``random_state`` is consumed by each call, so the same explainer gives a different
  explanation the second time; we build a fresh, seeded explainer per explanation, which makes the
  same call return the same explanation;
* ``LimeImageExplainer`` calls ``classifier_fn`` every ``batch_size`` images (default 10) and averages
  a hidden segment with the image mean per *three* channels; we pass our large batch size and an
  explicit ``hide_color`` so single-channel images work.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import numpy as np


def text_explainer(seed: int, class_names: Optional[Sequence[str]] = None):
    from lime.lime_text import LimeTextExplainer

    return LimeTextExplainer(class_names=list(class_names) if class_names else None,
                             random_state=np.random.RandomState(seed))


def tabular_explainer(training: np.ndarray, feature_names: List[str], categorical_features: List[int],
                      categorical_names: Dict[int, List[str]], seed: int, class_names=None):
    from lime.lime_tabular import LimeTabularExplainer

    return LimeTabularExplainer(training, mode="classification", feature_names=list(feature_names),
                                categorical_features=list(categorical_features),
                                categorical_names={k: list(v) for k, v in categorical_names.items()},
                                class_names=list(class_names) if class_names else None,
                                discretize_continuous=True, random_state=np.random.RandomState(seed))


def image_explainer(seed: int):
    from lime.lime_image import LimeImageExplainer

    return LimeImageExplainer(random_state=np.random.RandomState(seed))


def explain_image_instance(explainer, image: np.ndarray, predict: Callable, label: int, num_samples: int,
                           batch_size: int, segments: np.ndarray, seed: int, hide_color: float = 0.0):
    return explainer.explain_instance(image, predict, labels=(label,), top_labels=None, hide_color=hide_color,
                                      num_features=int(segments.max()) + 1, num_samples=num_samples,
                                      batch_size=batch_size, segmentation_fn=lambda _img: segments,
                                      random_seed=seed)
