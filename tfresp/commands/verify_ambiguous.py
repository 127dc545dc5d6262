"""Rows whose decision another machine's float noise can flip (``tfresp verify``).

A run's numbers come from its own scores. On the run's machine the SavedModel serves those scores bit for bit; on
an auditor's machine they may differ by float noise (up to ``tol``, ``verify.SCORE_TOL``), and a row whose score
lies within that noise of a threshold may have fallen on the other side in the run. The thresholds: the served
rule (the fairness group thresholds the SavedModel applies, read from the same rule object verify rebuilds),
the evaluation threshold (binary) or the argmax (the top two scores within ``2·tol``, multi-class), and for the
fairness audit its decision threshold, its threshold sweep and the calibration bin edges.

:func:`find` lists those rows; when the plain recomputation disagrees with the report, :func:`settle` tries every
side each of them may have taken (each row's scores moved by ``tol``, one class up and the other down; at most
``2**MAX_ROWS`` assignments) and keeps the first whose numbers reproduce every recorded one. Forgeries stay caught:
an assignment only moves these few rows, so a number changed by more than flipping them explains is reproduced by
none.

Example:
    >>> rows = find(ctx, {"test": proba}, 1e-5)
    >>> comparison, numbers, note = settle(rows, {"test": proba}, 1e-5, plain, recompute, check)
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

#: at most this many ambiguous rows are tried (2**6 = 64 recomputations); above it the mismatches stand
MAX_ROWS = 6


@dataclasses.dataclass(frozen=True)
class Row:
    """An ambiguous row: its split, its position, and the two classes whose scores move against each other (sign
    +1 raises ``up`` and lowers ``down`` by ``tol``; sign -1 the reverse)."""

    split: str
    index: int
    up: int
    down: int


def edges(ctx, threshold: Optional[float], split: str) -> Dict[int, List[float]]:
    """``{class column: thresholds on its score}`` the recomputation of ``split`` reads, besides the served rule."""
    out: Dict[int, List[float]] = {}
    binary = ctx.data.num_classes == 2
    if binary:
        out.setdefault(1, []).append(float(0.5 if threshold is None else threshold))
    cfg = ctx.config.fairness
    if cfg is not None:
        from tfresp.fairness import metrics as fm
        from tfresp.fairness.concern import positive_index

        pos = positive_index(ctx)
        if binary:
            out.setdefault(pos, []).append(float(cfg.decision_threshold))
        if split == "test":  # the audit's threshold sweep and calibration bins (validation has neither)
            out.setdefault(pos, []).extend(float(t) for t in (cfg.thresholds or fm.DEFAULT_THRESHOLDS))
            out[pos].extend(j / fm.ECE_BINS for j in range(1, fm.ECE_BINS))
    return out


def _near(proba: np.ndarray, columns: Dict[int, List[float]], tol: float) -> Tuple[np.ndarray, np.ndarray,
                                                                                       np.ndarray]:
    """``(ambiguous, up, down)`` for the fixed thresholds and (multi-class) the argmax."""
    p = np.asarray(proba, np.float64)
    n, k = p.shape
    near = np.zeros(n, bool)
    if k == 2:
        for col, ts in columns.items():
            for t in ts:
                near |= np.abs(p[:, col] - t) <= tol
        return near, np.ones(n, np.int64), np.zeros(n, np.int64)
    order = np.argsort(-p, axis=1, kind="stable")
    rows = np.arange(n)
    up, down = order[:, 0].copy(), order[:, 1].copy()
    tie = p[rows, up] - p[rows, down] <= 2 * tol
    for col, ts in columns.items():
        close = np.zeros(n, bool)
        for t in ts:
            close |= np.abs(p[:, col] - t) <= tol
        others = p.copy()
        others[:, col] = -np.inf
        sel = close & ~tie
        up[sel], down[sel] = col, others.argmax(axis=1)[sel]
        near |= close
    return near | tie, up, down


def _served_flips(ctx, split: str, proba: np.ndarray, tol: float) -> np.ndarray:
    """Rows whose served outcome changes when P(class 1) moves by ``tol`` either way, under the rule the
    SavedModel serves (``ctx.serving.postprocess``): the test decisions, and on validation the rule's probability
    of a positive decision (the expected gap and accuracy of ``fairness.mitigation.validation`` read it)."""
    module = ctx.serving.postprocess
    attrs = list(getattr(module, "attributes", None) or [])
    n = len(proba)
    if module is None or not attrs or proba.shape[1] != 2:
        return np.zeros(n, bool)
    from tfresp.fairness.concern import served_decisions

    part = ctx.data.validation if split == "validation" else ctx.data.test
    step = np.zeros_like(proba)
    step[:, 1], step[:, 0] = tol, -tol
    if split == "test":
        return served_decisions(module, ctx.data.preprocessor, part, attrs, proba + step) != served_decisions(
            module, ctx.data.preprocessor, part, attrs, proba - step)
    import tensorflow as tf

    groups = {a: tf.constant(part.frame[a].astype(str).to_numpy().astype(object)) for a in attrs}
    hi = module.positive_probability(groups, tf.constant(proba + step, tf.float32)).numpy()
    lo = module.positive_probability(groups, tf.constant(proba - step, tf.float32)).numpy()
    return hi != lo


def find(ctx, predictions: Dict[str, np.ndarray], tol: float, threshold: Optional[float] = None) -> List[Row]:
    """The rows of ``predictions`` (``{"test": proba, "validation": proba}``) whose scores lie within ``tol`` of a
    threshold their recomputed numbers read (see the module docstring); ``threshold``: the evaluation's."""
    rows = []
    for split, proba in predictions.items():
        proba = np.asarray(proba)
        near, up, down = _near(proba, edges(ctx, threshold, split), tol)
        near |= _served_flips(ctx, split, proba, tol)
        rows += [Row(split, int(i), int(up[i]), int(down[i])) for i in np.flatnonzero(near)]
    return rows


def argmax_rows(proba: np.ndarray, tol: float, split: str = "test") -> List[Row]:
    """The rows whose argmax another machine's noise can change (binary: P(class 1) within ``tol`` of 0.5;
    multi-class: the top two scores within ``2·tol``): what numbers computed from the argmax alone read (the
    accuracy and group gap of a TFLite variant)."""
    proba = np.asarray(proba)
    near, up, down = _near(proba, {1: [0.5]} if proba.shape[1] == 2 else {}, tol)
    return [Row(split, int(i), int(up[i]), int(down[i])) for i in np.flatnonzero(near)]


def moved(predictions: Dict[str, np.ndarray], rows: List[Row], signs, tol: float) -> Dict[str, np.ndarray]:
    """A copy of ``predictions`` with each row's scores moved by ``tol`` (``sign`` +1: ``up`` rises, ``down``
    falls; -1 the reverse)."""
    out = {k: np.array(v, copy=True) for k, v in predictions.items()}
    for row, sign in zip(rows, signs):
        out[row.split][row.index, row.up] += sign * tol
        out[row.split][row.index, row.down] -= sign * tol
    return out


def search(rows: List[Row], predictions: Dict[str, np.ndarray], tol: float,
           reproduces: Callable[[Dict[str, np.ndarray]], bool]) -> Optional[Tuple[int, ...]]:
    """The first assignment of signs (one per row, ``2**len(rows)`` tried) whose moved predictions
    ``reproduces`` accepts; None when none does."""
    for signs in itertools.product((1, -1), repeat=len(rows)):
        if reproduces(moved(predictions, rows, signs, tol)):
            return signs
    return None


def settle(rows: List[Row], predictions: Dict[str, np.ndarray], tol: float, plain, recompute: Callable,
           check: Callable) -> Tuple[object, object, Optional[str]]:
    """``(comparison, numbers, note)``: the plain numbers' comparison when every recorded number holds (or no row is
    ambiguous, or more than ``MAX_ROWS`` are); else the first assignment's whose numbers hold, or the plain one's.

    Args:
        rows: the ambiguous rows (:func:`find`).
        predictions: the scores ``plain`` was recomputed from.
        plain: the numbers recomputed from ``predictions``.
        recompute: ``fn(predictions) -> numbers``.
        check: ``fn(numbers) -> (comparison, every recorded number holds)``.
    """
    first, ok = check(plain)
    if ok or not rows:
        return first, plain, None
    what = f"{len(rows)} row(s) within {tol:g} of a decision threshold ({describe(rows)})"
    if len(rows) > MAX_ROWS:
        return first, plain, f"{what}: more than {MAX_ROWS}: their assignments were not tried"
    kept = {}

    def attempt(scores) -> bool:
        kept["numbers"] = recompute(scores)
        kept["comparison"], good = check(kept["numbers"])
        return good

    if search(rows, predictions, tol, attempt) is None:
        return first, plain, (f"{what}: no assignment of their decisions (2^{len(rows)} tried) reproduces the "
                              "recorded numbers")
    return kept["comparison"], kept["numbers"], (
        f"{what}: the recorded numbers match an assignment of these rows' decisions (each row's scores moved by at "
        f"most {tol:g}, the float noise allowed between machines); on this machine they fall on the other side of a "
        "threshold")


def describe(rows: List[Row]) -> str:
    """``test rows [12, 40], validation rows [3]``."""
    parts = []
    for split in dict.fromkeys(r.split for r in rows):
        idx = [r.index for r in rows if r.split == split]
        if idx:
            parts.append(f"{split} row{'s' if len(idx) > 1 else ''} {idx[:20]}{' ...' if len(idx) > 20 else ''}")
    return ", ".join(parts)
