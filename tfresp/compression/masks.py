"""Pruning masks and sparsity measurement on plain arrays (no Keras).

Two mask families:

* unstructured magnitude pruning (Han et al. 2015; Zhu & Gupta 2017): the ``k`` smallest
  ``|w|`` of a kernel are zeroed;
* ``N:M`` structured sparsity (Mishra et al. 2021, "Accelerating Sparse Deep Neural
  Networks"): in every group of ``M`` consecutive weights along the *input* (reduction) axis,
  only the ``N`` largest survive — the 2:4 pattern that sparse tensor cores execute.

Example:
    >>> w = np.random.randn(8, 3)
    >>> m = nm_mask(w, 2, 4)                 # 2 non-zeros per group of 4 input weights
    >>> assert check_nm(w * m, 2, 4)
"""
from __future__ import annotations

import fnmatch
from typing import Iterable, Optional

import numpy as np


def magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """0/1 mask zeroing the ``round(sparsity * w.size)`` smallest-magnitude entries of ``w``."""
    w = np.asarray(w)
    k = int(round(float(sparsity) * w.size))
    mask = np.ones(w.size, dtype=w.dtype if w.dtype.kind == "f" else np.float32)
    if k <= 0:
        return mask.reshape(w.shape)
    order = np.argsort(np.abs(w).ravel(), kind="stable")
    mask[order[:min(k, w.size)]] = 0
    return mask.reshape(w.shape)


def _groups_view(w: np.ndarray, m: int) -> np.ndarray:
    """Move the input axis last and cut it into groups of ``m``: ``[..., n_groups, m]``.

    The input (reduction) axis of a Dense/EinsumDense kernel ``[in, out]`` is axis 0; of a Conv
    kernel ``[h, w, in, out]`` it is axis -2. We take axis -2 for rank >= 2 (it is axis 0 for
    rank 2). An input dimension that is not a multiple of ``m`` is zero-padded, as sparse kernels
    pad it: the last, partial group then keeps at most ``n`` of its real weights.
    """
    if w.ndim < 2:
        raise ValueError(f"N:M sparsity needs a kernel of rank >= 2, got shape {w.shape}")
    moved = np.moveaxis(w, -2, -1)  # [..., out, in]
    n_in = moved.shape[-1]
    pad = (-n_in) % m
    if pad:
        moved = np.concatenate([moved, np.zeros(moved.shape[:-1] + (pad,), moved.dtype)], axis=-1)
    return moved.reshape(moved.shape[:-1] + ((n_in + pad) // m, m))


def nm_mask(w: np.ndarray, n: int = 2, m: int = 4) -> np.ndarray:
    """0/1 mask keeping the ``n`` largest ``|w|`` in every group of ``m`` along the input axis."""
    w = np.asarray(w)
    g = _groups_view(w, m)
    order = np.argsort(-np.abs(g), axis=-1, kind="stable")
    keep = np.zeros_like(g, dtype=np.float32)
    np.put_along_axis(keep, order[..., :n], 1.0, axis=-1)
    moved_shape = np.moveaxis(w, -2, -1).shape
    keep = keep.reshape(moved_shape[:-1] + (-1,))[..., :moved_shape[-1]]
    return np.moveaxis(keep, -1, -2).astype(np.float32)


def check_nm(w: np.ndarray, n: int = 2, m: int = 4) -> bool:
    """True if every group of ``m`` input weights (last group zero-padded) has at most ``n`` non-zeros."""
    g = _groups_view(np.asarray(w), m)
    return bool(np.all(np.count_nonzero(g, axis=-1) <= n))


def nm_applicable(shape, m: int = 4) -> bool:
    """Whether tfmot's ``sparsity_m_by_n`` accepts the kernel (it needs a multiple of ``m`` inputs)."""
    return len(shape) >= 2 and int(shape[-2]) % m == 0


def sparsity(w: np.ndarray) -> float:
    """Fraction of exact zeros."""
    w = np.asarray(w)
    return float(1.0 - np.count_nonzero(w) / max(w.size, 1))


def name_selected(name: str, include: Optional[Iterable[str]], exclude: Optional[Iterable[str]]) -> bool:
    """Glob selection on a layer or variable name: in ``include`` (if given) and not in ``exclude``.

    A pattern matches the whole name or any ``/``-separated component of it, so ``logits``
    selects ``mlp/logits/kernel:0``.
    """
    comps = name.replace(":0", "").split("/")
    # Wrapper prefixes (tfmot QAT ``quant_<layer>``, pruning ``prune_low_magnitude_<layer>``) still match.
    parts = [name] + comps + [c.split("_", 1)[1] for c in comps if c.startswith("quant_")] + [
        c[len("prune_low_magnitude_"):] for c in comps if c.startswith("prune_low_magnitude_")]

    def hit(patterns):
        return any(fnmatch.fnmatchcase(p, pat) for pat in patterns for p in parts)

    if include and not hit(include):
        return False
    if exclude and hit(exclude):
        return False
    return True
