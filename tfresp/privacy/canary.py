"""Canary audit in one training run: an empirical ε lower bound that can catch a broken DP-SGD run.

Steinke, Nasr & Jagielski, "Privacy Auditing with One (1) Training Run", NeurIPS 2023. ``m`` synthetic
canaries (random inputs, random labels) are each added to the training data with probability 1/2 (a
secret coin per canary). After training, every canary is scored by the model's log-probability of its
label; the auditor guesses "excluded" for the ``k`` lowest scores (``r = k`` guesses, fixed in advance, the
rest abstain). Only the low side is guessed: a trained-on canary is memorised and never confidently wrong,
while an unseen random-label canary gets a confident, extrapolated prediction that is right half the time,
so high scores do not separate the two (measured: top-side guesses cost the audit most of its power). Under (ε, δ)-DP the number of correct guesses
is dominated by Binomial(r, e^ε / (1 + e^ε)) plus a δ term (their Theorem 5.2 / Algorithm 2); the largest ε
whose p-value is still below β is a lower bound at confidence 1 − β. The binomial tail comes from scipy.

Canaries are synthetic (not training rows), so adding them changes nothing in the guarantee of the real
rows, and the audit's output is post-processing of the model and the secret coins.

Example:
    >>> canary.epsilon_lower_bound(m=100, r=20, v=20, delta=1e-5)   # all 20 guesses right
"""
from __future__ import annotations

import math
from typing import Dict, List, Tuple

import numpy as np
from scipy import stats

#: the auditor guesses "excluded" for the lowest GUESS_FRACTION of the scores (fixed before looking at them)
GUESS_FRACTION = 0.2
CONFIDENCE = 0.95


def problems(ctx) -> List[Tuple[str, object, str]]:
    """Config problems of ``privacy.canaries`` for this run (empty when fine or off)."""
    m = ctx.config.privacy.canaries
    if not m:
        return []
    out = []
    if ctx.config.task != "classification":
        out.append(("privacy.canaries", m, f"canaries need task: classification (got {ctx.config.task!r})"))
    x = ctx.data.train.x
    # a numpy matrix, or a run's compact rows (tfresp.data.compact.CompactRows: numerics + category codes that
    # expand to the same float matrix, measured by its ndim/dtype)
    dense = hasattr(x, "__array__") and getattr(x, "ndim", 0) == 2
    if not (dense and np.issubdtype(np.dtype(x.dtype), np.floating)):
        out.append(("privacy.canaries", m, "canaries need numeric tabular inputs (a 2-D float matrix); set 0 for "
                                           "text or image data"))
    if m < 20:
        out.append(("privacy.canaries", m, "at least 20 (0 turns the canary audit off)"))
    return out


def make(ctx, seed: int) -> Dict[str, np.ndarray]:
    """The canaries of this run: ``x`` (standard-normal inputs), ``y`` (uniform labels), ``included`` (secret)."""
    m = int(ctx.config.privacy.canaries)
    rng = np.random.default_rng(seed)
    x = ctx.data.train.x
    return {"x": rng.standard_normal((m, x.shape[1])).astype(x.dtype),
            "y": rng.integers(0, ctx.data.num_classes, m).astype(np.asarray(ctx.data.train.y).dtype),
            "included": rng.random(m) < 0.5}


def with_canaries(x, y, extras: Dict[str, np.ndarray], canaries: Dict[str, np.ndarray]):
    """The training arrays with the included canaries appended (sample weight 1, other extras 0)."""
    keep = canaries["included"]
    k = int(keep.sum())
    x = np.concatenate([x, canaries["x"][keep]])
    y = np.concatenate([np.asarray(y), canaries["y"][keep]])
    out = {}
    for name, arr in dict(extras).items():
        arr = np.asarray(arr)
        fill = np.ones if name == "sample_weight" else np.zeros
        out[name] = np.concatenate([arr, fill((k,) + arr.shape[1:], arr.dtype)])
    out.setdefault("sample_weight", np.ones(len(y), np.float32))
    return x, y, out


def p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[>= v correct of r guesses] for an (ε, δ)-DP run with m canaries (Steinke et al. 2023, Algorithm 2)."""
    q = 1.0 / (1.0 + math.exp(-epsilon))  # accuracy of ε-DP randomized response
    tail = float(stats.binom.sf(v - 1, r, q))
    alpha, acc = 0.0, 0.0
    for i in range(1, v + 1):  # the δ term: max_i P[v > Binomial(r, q) >= v - i] / i
        acc += float(stats.binom.pmf(v - i, r, q))
        alpha = max(alpha, acc / i)
    return min(1.0, tail + alpha * delta * 2 * m)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, confidence: float = CONFIDENCE) -> float:
    """The largest ε that ``v`` correct of ``r`` guesses reject at ``confidence`` (0 if none)."""
    beta = 1.0 - confidence
    if r == 0 or p_value(m, r, v, 0.0, delta) >= beta:
        return 0.0
    lo, hi = 0.0, 1.0
    while p_value(m, r, v, hi, delta) < beta:
        lo, hi = hi, hi * 2
        if hi > 1e3:
            return math.inf
    for _ in range(40):  # invariant: p(lo) < beta <= p(hi)
        mid = 0.5 * (lo + hi)
        if p_value(m, r, v, mid, delta) < beta:
            lo = mid
        else:
            hi = mid
    return lo


def guesses(scores: np.ndarray, included: np.ndarray, k_out: int, k_in: int = 0) -> Tuple[int, int]:
    """(r, v): guess "out" for the ``k_out`` lowest and "in" for the ``k_in`` highest scores; count correct ones."""
    order = np.argsort(scores, kind="stable")
    low, high = order[:k_out], order[len(order) - k_in:] if k_in else order[:0]
    return k_out + k_in, int(included[high].sum() + (~included[low]).sum())


def audit(ctx, seed: int, claimed_epsilon: float) -> dict:
    """Score the run's canaries with the trained model and turn the guesses into an ε lower bound."""
    can = make(ctx, seed)
    # log-softmax of the canary label in float64 from the logits: float32 probabilities saturate at 1.0 for
    # confident outputs, and the ties would turn the ranking into noise
    logits = np.asarray(ctx.core.predict(can["x"], batch_size=2048, verbose=0), np.float64)
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    scores = log_probs[np.arange(len(can["y"])), can["y"]]
    m = len(scores)
    k = max(1, int(GUESS_FRACTION * m))
    r, v = guesses(scores, can["included"], k)
    delta = ctx.budget.delta
    lb = epsilon_lower_bound(m, r, v, delta)
    return {
        "canaries": m, "guesses": r, "correct": v, "confidence": CONFIDENCE, "delta": delta,
        "epsilon_lower_bound": lb, "claimed_epsilon": claimed_epsilon, "exceeds_claim": bool(lb > claimed_epsilon),
        "method": ("Steinke, Nasr & Jagielski 2023 (one training run): random-input, random-label canaries, each "
                   f"trained on with a secret probability 1/2; 'not trained on' guessed for the {k} lowest scores "
                   "(log-probability of the canary label); lower bound at 95% confidence. A bound above the claimed "
                   "ε means the run is NOT private as claimed; a bound below it is no proof of privacy"),
    }


# -- white-box gradient canaries ------------------------------------------------------------------------
#: gradient canaries the DP-SGD mechanism draws when the canary audit is on: enough that a run leaking them
#: (no noise, or a clip bound above the one the noise is calibrated to) gives a lower bound above ε ≈ 4.9
GRADIENT_CANARIES = 2000
#: the norm of a gradient canary before clipping: a worst-case example that only the clip bound C can tame
RAW_NORM = 1e6
_CANARY_KEY = 0x0CA4A21E5


class GradientCanaries:
    """White-box Dirac gradient canaries inside DP-SGD (Nasr et al. 2023, "Tight Auditing of Differentially
    Private Machine Learning"; Steinke, Nasr & Jagielski 2023, one-run auditing, white-box setting).

    Canary ``j`` is a pseudo-example whose gradient is ``RAW_NORM · e_j`` on its own auxiliary coordinate (no
    model weight): a secret coin (1/2) decides whether it is in the data; an included canary joins each step with
    the mechanism's Poisson rate ``q``, is clipped to the mechanism's ``C`` and summed, and the same noise loop
    that noises the model's gradient noises the canary coordinates. Nothing reaches the model: the noisy canary
    sums are accumulated in ``scores`` (what SGD with learning rate 1 would make of the coordinate). The audit
    guesses "in" for the highest scores. A correct run keeps the bound below its ε; a run without noise, or with
    a clip bound larger than the one the noise was calibrated to, gives each participating canary a score far
    above every excluded one and the bound exceeds ε. What it does not test: the per-example gradients of the
    real model (the input-space canaries and the clipping-exactness tests do).

    Args:
        m: number of canaries.
        seed: the mechanism's secret int64 seed variable (coins and participation derive from it in the graph,
            so a run resumed from a checkpoint restores them with the seed).
        sample_rate: Poisson rate ``q`` of the mechanism.
    """

    def __init__(self, m: int, seed, sample_rate: float):
        import tensorflow as tf

        self.m, self.seed, self.sample_rate = int(m), seed, float(sample_rate)
        self.scores = tf.Variable(tf.zeros([self.m]), trainable=False, name="dp_gradient_canary_scores",
                                  synchronization=tf.VariableSynchronization.ON_WRITE,
                                  aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def _key(self):
        import tensorflow as tf

        return tf.bitwise.bitwise_xor(tf.cast(self.seed, tf.int64), tf.constant(_CANARY_KEY, tf.int64))

    def included(self):
        """The secret coins (a bool tensor ``[m]``)."""
        import tensorflow as tf

        u = tf.random.stateless_uniform([self.m], seed=tf.stack([self._key(), tf.constant(-1, tf.int64)]))
        return u < 0.5

    def clipped_sum(self, step, l2_norm_clip: float):
        """The step's clipped canary sum ``[m]``: participating included canaries, each clipped to ``C``."""
        import tensorflow as tf

        u = tf.random.stateless_uniform([self.m], seed=tf.stack([self._key(), tf.cast(step, tf.int64)]))
        joins = tf.cast(tf.logical_and(u < self.sample_rate, self.included()), tf.float32)
        factor = tf.minimum(1.0, tf.cast(l2_norm_clip, tf.float32) / RAW_NORM)  # the clip rule min(1, C/‖g‖)
        return joins * RAW_NORM * factor

    def record(self, noisy_sum) -> None:
        self.scores.assign_add(noisy_sum)

    def audit(self, claimed_epsilon: float, delta: float) -> dict:
        """An ε lower bound from the canaries' scores (95% confidence)."""
        scores = self.scores.numpy().astype(np.float64)
        included = self.included().numpy()
        k = max(1, int(GUESS_FRACTION * self.m))
        r, v = guesses(scores, included, 0, k)
        lb = epsilon_lower_bound(self.m, r, v, delta)
        return {
            "canaries": self.m, "guesses": r, "correct": v, "confidence": CONFIDENCE, "delta": delta,
            "epsilon_lower_bound": lb, "claimed_epsilon": claimed_epsilon, "exceeds_claim": bool(lb > claimed_epsilon),
            "method": ("white-box Dirac gradient canaries (Nasr et al. 2023; Steinke, Nasr & Jagielski 2023): "
                       f"{self.m} pseudo-examples of raw gradient norm {RAW_NORM:g} on auxiliary coordinates, each "
                       "in the data with a secret probability 1/2, Poisson-sampled, clipped and noised by the run's "
                       f"DP-SGD step; 'in' guessed for the {k} highest noisy sums; lower bound at 95% confidence. "
                       "It tests the noise, the clip bound and the sampling rate the accounting assumes, not the "
                       "per-example gradients of the model"),
        }

    def get_state(self) -> dict:
        return {"dp_gradient_canary_scores": self.scores.numpy().tolist()}

    def set_state(self, state: dict) -> None:
        if "dp_gradient_canary_scores" in state:
            self.scores.assign(np.asarray(state["dp_gradient_canary_scores"], np.float32))
