"""Counterfactual logit pairing (CLP) for text classifiers.

Every identity term in an input is swapped for its counterpart from ``fairness.identity_terms``
(``[[he, she], [gay, straight], ...]``; each list is rotated, so ``he -> she -> he``) at the
WordPiece-id level, and the absolute change of the logits between the example and its
counterfactual is penalized for examples that contain at least one identity term (Garg, Perot,
Limtiaco, Taly, Chi & Beutel, "Counterfactual fairness in text classification through
robustness", AIES 2019). The term is per example, so DP-SGD clips it with the rest of the loss.

Only terms that are a single WordPiece in the vocabulary can be swapped; the others are listed in
the report as skipped.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

#: Default swap lists (Garg et al. 2019 use a longer identity-term list in the same spirit).
DEFAULT_IDENTITY_TERMS = [
    ["he", "she"], ["him", "her"], ["his", "hers"], ["man", "woman"], ["men", "women"], ["boy", "girl"],
    ["boys", "girls"], ["male", "female"], ["father", "mother"], ["son", "daughter"], ["husband", "wife"],
    ["brother", "sister"], ["gay", "straight"], ["black", "white"], ["christian", "muslim", "jewish"],
    ["american", "mexican", "african", "asian"],
]


def swap_table(vocab: Sequence[str], identity_terms: List[List[str]], lowercase: bool = True):
    """``(table, pairs, skipped)``: an id -> counterfactual id lookup array over the vocabulary."""
    index: Dict[str, int] = {t: i for i, t in enumerate(vocab)}
    table = np.arange(len(vocab), dtype=np.int32)
    pairs, skipped = [], []
    for terms in identity_terms:
        terms = [t.lower() if lowercase else t for t in terms]
        usable = [t for t in terms if t in index]
        skipped.extend(t for t in terms if t not in index)
        if len(usable) < 2:
            continue
        for a, b in zip(usable, usable[1:] + usable[:1]):
            table[index[a]] = index[b]
            pairs.append((a, b))
    return table, pairs, skipped


def counterfactual_ids(ids, table):
    """Swap identity-term ids; returns ``(swapped_ids, has_identity [B] float)``."""
    table = tf.constant(table, tf.int32)
    ids = tf.cast(ids, tf.int32)
    swapped = tf.gather(table, ids)
    has = tf.cast(tf.reduce_any(tf.not_equal(swapped, ids), axis=1), tf.float32)
    return swapped, has


def make_clp_loss(table: np.ndarray, weight: float):
    """Per-example loss term ``weight * mean_k |logit_k(x) - logit_k(x_cf)|`` on rows with identity terms."""

    def clp_loss(model, x, y, logits, extras, training):
        swapped, has = counterfactual_ids(x["input_ids"], table)
        cf = dict(x)
        cf["input_ids"] = swapped
        cf_logits = model.core(cf, training=training)
        diff = tf.reduce_mean(tf.abs(tf.cast(logits, tf.float32) - tf.cast(cf_logits, tf.float32)), axis=1)
        return weight * diff * has

    clp_loss.__name__ = "fair_clp"
    return clp_loss


def counterfactual_report(predict_logits, x: dict, table: np.ndarray, batch: int = 512) -> dict:
    """Flip rate and mean |Δlogit| between test rows with identity terms and their counterfactuals."""
    ids = np.asarray(x["input_ids"])
    swapped = table[ids]
    has = (swapped != ids).any(axis=1)
    n = int(has.sum())
    out = {"rows_with_identity_terms": n, "rows": int(len(ids))}
    if n == 0:
        return out
    sub = {k: np.asarray(v)[has] for k, v in x.items()}
    cf = dict(sub)
    cf["input_ids"] = swapped[has].astype(sub["input_ids"].dtype)
    a, b = predict_logits(sub), predict_logits(cf)
    out["counterfactual_flip_rate"] = float(np.mean(a.argmax(1) != b.argmax(1)))
    out["mean_abs_logit_change"] = float(np.mean(np.abs(a - b)))
    return out
