"""LIME explanations of text, tabular and image classifiers (Ribeiro, Singh & Guestrin 2016).

Each function takes a *probability function* (``inputs -> [n, num_classes]``), normally a compiled
:mod:`tfresp.explain.predict` predictor, and a ``seed``; the same call gives the same explanation.
Explanations are plain dicts (JSON-ready) with the top features by absolute weight for the
explained class.

Example:
    >>> predict = string_predictor(text_model)
    >>> exp = explain_text("great flight, rude staff", predict, seed=0, num_samples=1000)
    >>> exp["features"][0]
    {'feature': 'rude', 'weight': -0.31}
"""
from __future__ import annotations

import html
import itertools
import re
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from tfresp.explain import _lime
from tfresp.explain.predict import BatchedPredictor, raw_proba_fn, tabular_raw_predictor

WORD_SPLIT = r"\W+"


def _label_for(predict: Callable, instance, label: Optional[int]) -> int:
    if label is not None:
        return int(label)
    return int(np.argmax(predict(instance)[0]))


def _summarize(exp, label: int, top_k: int, names: Callable[[int], str], seed: int, num_samples: int,
               class_names=None, extra: Callable[[int], dict] = None) -> dict:
    pairs = sorted(exp.local_exp[label], key=lambda p: -abs(p[1]))
    feats = []
    for idx, w in pairs[:top_k]:
        item = {"feature": names(idx), "weight": float(w)}
        if extra is not None:
            item.update(extra(idx))
        feats.append(item)
    proba = np.asarray(exp.predict_proba, dtype=float)
    return {"method": "lime", "label": int(label),
            "class_name": str(class_names[label]) if class_names is not None else str(label),
            "probability": float(proba[label]), "features": feats,
            "all_weights": {names(i): float(w) for i, w in exp.local_exp[label]},
            "intercept": float(exp.intercept[label]), "local_r2": float(exp.score),
            "seed": int(seed), "num_samples": int(num_samples)}


def explain_text(text: str, predict: Callable[[Sequence[str]], np.ndarray], *, seed: int = 0,
                 num_samples: int = 1000, top_k: int = 5, label: Optional[int] = None,
                 class_names: Optional[Sequence[str]] = None) -> dict:
    """LIME explanation of one text for any ``strings -> probabilities`` function.

    Args:
        text: the raw text.
        predict: ``list[str] -> float [n, num_classes]`` (e.g. :func:`~tfresp.explain.predict.string_predictor`).
        seed: seed of LIME's word-removal draws.
        num_samples: neighbourhood size.
        top_k: number of words reported.
        label: class to explain (default: the predicted class).
        class_names: names of the classes.

    Returns:
        dict with ``features`` (``[{"feature": word, "weight": w}]`` by decreasing ``|w|``), ``label``,
        ``probability``, ``all_weights`` and ``html`` (the text with words highlighted, escaped).
    """
    label = _label_for(predict, [text], label)
    explainer = _lime.text_explainer(seed, class_names)
    exp = explainer.explain_instance(text, predict, labels=(label,), num_features=max(top_k, 10 ** 6),
                                     num_samples=num_samples)
    words = exp.domain_mapper.indexed_string
    out = _summarize(exp, label, top_k, lambda i: words.word(i), seed, num_samples, class_names)
    out["html"] = highlight_html(text, out["all_weights"])
    return out


def highlight_html(text: str, weights: Dict[str, float]) -> str:
    """The text as an HTML snippet: each word with a LIME weight gets a coloured background.

    Green supports the explained class, red speaks against it; opacity is ``|w| / max |w|``. Every
    piece of the text is escaped with :func:`html.escape`, so the snippet is safe to embed.
    """
    scale = max([abs(w) for w in weights.values()] + [1e-12])
    parts = []
    for piece in re.split(f"({WORD_SPLIT})", text):
        if not piece:
            continue
        w = weights.get(piece)
        if w is None or re.fullmatch(WORD_SPLIT, piece):
            parts.append(html.escape(piece))
            continue
        alpha = min(1.0, abs(w) / scale)
        rgb = "0,160,60" if w > 0 else "210,40,40"
        parts.append(f'<span class="tfresp-lime" title="{w:+.3g}" style="background:rgba({rgb},{alpha:.2f})">'
                     f"{html.escape(piece)}</span>")
    return '<p class="tfresp-lime-text">' + "".join(parts) + "</p>"


class TabularLime:
    """LIME on *raw* tabular rows of a run, through its fitted preprocessor.

    Numeric columns are perturbed (and discretized into quartiles) by LIME in raw units;
    categorical columns are LIME categorical features with the training vocabulary, so
    explanations read ``"age > 47.00"`` or ``"relationship=Husband"``.

    Args:
        preprocessor: the run's fitted :class:`~tfresp.data.preprocess.TabularPreprocessor`.
        core: the trained core model (encoded rows -> logits); or None with ``raw_proba``.
        train_frame: raw training rows (LIME's statistics; a sample of ``max_train`` rows is used).
        class_names: names of the classes.
        batch_size: rows per compiled predict call.
        max_train: rows of ``train_frame`` used for LIME's feature statistics.
        raw_proba: TF function ``{column: tensor} -> probabilities`` replacing preprocessor + core
            (e.g. a SavedModel's serving signature via :func:`~tfresp.explain.predict.serving_proba_fn`).
    """

    def __init__(self, preprocessor, core, train_frame: pd.DataFrame, class_names=None, batch_size: int = 512,
                 max_train: int = 5000, seed: int = 0, raw_proba: Optional[Callable] = None):
        self.preprocessor = preprocessor
        self.class_names = class_names
        self.columns = []
        for spec in preprocessor.spec:
            if spec["kind"] == "numeric":
                self.columns.append({"name": spec["name"], "kind": "numeric"})
            else:
                self.columns.append({"name": spec["name"], "kind": "categorical", "values": list(spec["vocab"])})
        if len(train_frame) > max_train:
            train_frame = train_frame.sample(n=max_train, random_state=seed)
        self.raw_proba = raw_proba or raw_proba_fn(preprocessor, core)
        self.batch_size = int(batch_size)
        self.training = self.encode(train_frame)
        self.predict: BatchedPredictor = None
        self._build_predictor()

    @property
    def feature_names(self) -> List[str]:
        return [c["name"] for c in self.columns]

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw rows -> LIME's numeric matrix (categorical values -> codes; unseen values get new codes)."""
        out = np.zeros((len(frame), len(self.columns)), dtype=np.float64)
        for j, c in enumerate(self.columns):
            s = frame[c["name"]]
            if c["kind"] == "numeric":
                out[:, j] = s.astype("float64").to_numpy()
            else:
                index = {v: i for i, v in enumerate(c["values"])}
                codes = []
                for v in s.astype(str).str.strip().to_numpy():
                    if v not in index:  # unseen in training: the preprocessor encodes it as all zeros
                        index[v] = len(c["values"])
                        c["values"].append(v)
                    codes.append(index[v])
                out[:, j] = codes
        return out

    def _explainer(self, seed: int):
        cats = [j for j, c in enumerate(self.columns) if c["kind"] == "categorical"]
        names = {j: self.columns[j]["values"] for j in cats}
        return _lime.tabular_explainer(self.training, self.feature_names, cats, names, seed, self.class_names)

    def explain(self, row: pd.DataFrame, *, seed: int = 0, num_samples: int = 1000, top_k: int = 5,
                label: Optional[int] = None) -> dict:
        """Explain one raw row (a one-row DataFrame or a Series)."""
        if isinstance(row, pd.Series):
            row = row.to_frame().T
        x = self.encode(row)[0]
        if self._table_sizes() != self._compiled_sizes:  # a new category needs new lookup tables
            self._build_predictor()
        label = _label_for(self.predict, x[None, :], label)
        explainer = self._explainer(seed)
        exp = explainer.explain_instance(x, self.predict, labels=(label,), num_features=len(self.columns),
                                         num_samples=num_samples)
        names = self.feature_names
        mapper = exp.domain_mapper

        def condition(i):
            name = mapper.discretized_feature_names[i] if mapper.discretized_feature_names else mapper.feature_names[i]
            return {"condition": name}

        return _summarize(exp, label, top_k, lambda i: names[i], seed, num_samples, self.class_names, condition)

    def _table_sizes(self):
        return tuple(len(c["values"]) for c in self.columns if c["kind"] == "categorical")

    def _build_predictor(self):
        self.predict = tabular_raw_predictor(self.raw_proba, self.columns, self.batch_size)
        self._compiled_sizes = self._table_sizes()


def grid_segments(height: int, width: int, cells: int = 8) -> np.ndarray:
    """Square-grid superpixels (``cells x cells``): deterministic and valid for any image size."""
    rows = np.minimum(np.arange(height) * cells // max(height, 1), cells - 1)
    cols = np.minimum(np.arange(width) * cells // max(width, 1), cells - 1)
    return (rows[:, None] * cells + cols[None, :]).astype(np.int64)


def explain_image(image: np.ndarray, predict: Callable[[np.ndarray], np.ndarray], *, seed: int = 0,
                  num_samples: int = 1000, top_k: int = 5, label: Optional[int] = None,
                  segments: Optional[np.ndarray] = None, batch_size: int = 256, hide_color: float = 0.0,
                  class_names=None) -> dict:
    """LIME explanation of one image ``[H, W, C]`` over superpixels (default: an 8x8 grid).

    Returns:
        dict with ``features`` (``[{"feature": "segment_<i>", "weight": w}]``), and ``heatmap``
        (``[H, W]`` array of each pixel's segment weight) for plotting.
    """
    image = np.asarray(image)
    if segments is None:
        segments = grid_segments(image.shape[0], image.shape[1])
    proba = predict(image[None])[0]
    label = int(np.argmax(proba)) if label is None else int(label)
    explainer = _lime.image_explainer(seed)
    exp = _lime.explain_image_instance(explainer, image, predict, label, num_samples, batch_size, segments, seed,
                                       hide_color)
    exp.predict_proba = proba  # lime's ImageExplanation does not keep it
    out = _summarize(exp, label, top_k, lambda i: f"segment_{i}", seed, num_samples, class_names)
    weights = np.zeros(int(segments.max()) + 1)
    for i, w in exp.local_exp[label]:
        weights[i] = w
    out["heatmap"] = weights[segments]
    return out


def top_features(explanation: dict, k: int) -> List[str]:
    return [f["feature"] for f in explanation["features"][:k]]


def jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def stability(explain_fn: Callable[[int], dict], seeds: Sequence[int], k: int) -> dict:
    """Mean pairwise Jaccard index of the top-``k`` feature sets over explanations with different seeds.

    Args:
        explain_fn: ``seed -> explanation dict``.
        seeds: the seeds (e.g. ``range(seed, seed + 5)``).
        k: size of the compared top sets.

    Returns:
        ``{"jaccard_mean", "jaccard_min", "seeds", "top_k"}`` (1.0: the same top-k set for every seed).
    """
    tops = [top_features(explain_fn(s), k) for s in seeds]
    scores = [jaccard(a, b) for a, b in itertools.combinations(tops, 2)]
    return {"jaccard_mean": float(np.mean(scores)), "jaccard_min": float(np.min(scores)),
            "seeds": [int(s) for s in seeds], "top_k": int(k)}
