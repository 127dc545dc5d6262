"""White-box (FGSM, PGD) and black-box (random noise) evasion attacks, in TensorFlow.

All attacks work on continuous model inputs of any shape ``[B, ...]`` (images, standardized
tabular features, input embeddings) and are *per-example*: the perturbation of example ``i``
depends only on example ``i`` (the objective is a sum of per-example losses, and models must not
mix examples, e.g. no BatchNorm in training mode), so they compose with DP-SGD.

Constraints applied after every step, in this order:
    1. projection onto the ε-ball (L∞: clip each coordinate; L2: rescale the whole perturbation);
    2. ``mask`` (1 = attackable coordinate, 0 = frozen, e.g. one-hot categorical columns);
    3. valid range ``[clip_min, clip_max]`` (scalars or per-coordinate arrays broadcastable to x).
Step 3 can only shrink a perturbation coordinate-wise towards x, so the result stays inside the ε-ball.

References:
    Goodfellow, Shlens & Szegedy (2015), "Explaining and Harnessing Adversarial Examples" (FGSM).
    Madry, Makelov, Schmidt, Tsipras & Vladu (2018), "Towards Deep Learning Models Resistant to
    Adversarial Attacks" (PGD with random start; step size 2.5·ε/steps).
    Miyato et al. (2017), "Adversarial Training Methods for Semi-Supervised Text Classification"
    (perturbations of word embeddings).

Example:
    >>> x_adv = pgd(core, x, y, epsilon=0.1, steps=50, restarts=5, clip_min=0.0, clip_max=1.0)
"""
from __future__ import annotations

from typing import Callable, Optional

import tensorflow as tf

NORMS = ("linf", "l2")
_TINY = 1e-12


def cross_entropy(logits, y):
    """Per-example softmax cross-entropy ``[B]`` (the default attack objective)."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(y, tf.int32), logits=logits)


def _reduce_axes(x):
    return tf.range(1, tf.rank(x))


def _per_example_norm(v, norm: str):
    axes = _reduce_axes(v)
    if norm == "linf":
        return tf.reduce_max(tf.abs(v), axis=axes)
    return tf.sqrt(tf.reduce_sum(tf.square(v), axis=axes) + _TINY)


def _expand(v, like):
    """``[B]`` -> ``[B, 1, ..., 1]`` matching ``like``'s rank."""
    shape = tf.concat([tf.shape(v), tf.ones([tf.rank(like) - 1], tf.int32)], axis=0)
    return tf.reshape(v, shape)


def project(delta, epsilon, norm: str):
    """Project perturbations ``delta`` onto the ε-ball of ``norm`` (per example)."""
    if norm == "linf":
        return tf.clip_by_value(delta, -epsilon, epsilon)
    n = _per_example_norm(delta, "l2")
    factor = tf.minimum(1.0, epsilon / tf.maximum(n, _TINY))
    return delta * _expand(factor, delta)


def _constrain(x, delta, epsilon, norm, mask, clip_min, clip_max):
    delta = project(delta, epsilon, norm)
    if mask is not None:
        delta = delta * mask
    x_adv = x + delta
    if clip_min is not None or clip_max is not None:
        lo = -float("inf") if clip_min is None else clip_min
        hi = float("inf") if clip_max is None else clip_max
        x_adv = tf.minimum(tf.maximum(x_adv, lo), hi)
    return x_adv


def _direction(grad, norm: str, mask):
    if mask is not None:
        grad = grad * mask
    if norm == "linf":
        return tf.sign(grad)
    return grad / _expand(tf.maximum(_per_example_norm(grad, "l2"), _TINY), grad)


def random_in_ball(shape, epsilon, norm: str, seed=None, dtype=tf.float32):
    """Uniform samples from the ε-ball (L∞: uniform cube; L2: uniform in the ball)."""
    if norm == "linf":
        return tf.random.uniform(shape, -1.0, 1.0, dtype=dtype, seed=seed) * epsilon
    g = tf.random.normal(shape, dtype=dtype, seed=seed)
    g = g / _expand(tf.maximum(_per_example_norm(g, "l2"), _TINY), g)
    d = tf.cast(tf.reduce_prod(shape[1:]), dtype)
    r = tf.random.uniform(shape[:1], dtype=dtype, seed=seed) ** (1.0 / d)
    return g * _expand(r * epsilon, g)


def _as_tensor(v, dtype):
    return None if v is None else tf.cast(tf.convert_to_tensor(v), dtype)


def _check_norm(norm):
    if norm not in NORMS:
        raise ValueError(f"Invalid value for argument `norm`. Received: norm={norm!r}. Expected one of {NORMS}")


def fgsm(model_fn: Callable, x, y, epsilon: float, *, norm: str = "linf", mask=None, clip_min=None,
         clip_max=None, objective: Callable = cross_entropy):
    """Fast Gradient (Sign) Method: one step of size ε along the (sign of the) loss gradient.

    Args:
        model_fn: ``x -> logits``.
        x: inputs ``[B, ...]``.
        y: integer labels ``[B]`` (or whatever ``objective`` takes as its second argument).
        epsilon: radius of the ε-ball.
        norm: ``"linf"`` (FGSM) or ``"l2"`` (fast gradient method).
        mask: 1 for attackable coordinates, 0 for frozen ones (broadcastable to ``x``).
        clip_min, clip_max: valid input range (scalars or per-coordinate arrays).
        objective: ``(logits, y) -> [B]`` per-example loss to increase.

    Returns:
        Adversarial inputs with the dtype and shape of ``x``.
    """
    _check_norm(norm)
    x = tf.convert_to_tensor(x)
    mask, clip_min, clip_max = (_as_tensor(v, x.dtype) for v in (mask, clip_min, clip_max))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(objective(model_fn(x), y))
    grad = tape.gradient(loss, x)
    delta = _direction(grad, norm, mask) * epsilon
    return tf.stop_gradient(_constrain(x, delta, epsilon, norm, mask, clip_min, clip_max))


def pgd(model_fn: Callable, x, y, epsilon: float, *, norm: str = "linf", steps: int = 10,
        step_size: Optional[float] = None, random_start: bool = True, restarts: int = 1, mask=None,
        clip_min=None, clip_max=None, objective: Callable = cross_entropy, seed=None,
        start_noise: Optional[float] = None):
    """Projected Gradient Descent (Madry et al. 2018) with random start and restarts.

    Each restart runs ``steps`` projected steps from a random point of the ε-ball; per example the
    strongest restart is kept (a misclassifying one first, then the highest loss).

    Args:
        model_fn: ``x -> logits``.
        x: inputs ``[B, ...]``.
        y: integer labels ``[B]`` (or the second argument of ``objective``).
        epsilon: radius of the ε-ball (a Python float or scalar tensor).
        norm: ``"linf"`` or ``"l2"``.
        steps: projected steps per restart.
        step_size: step length; default ``2.5 * epsilon / steps`` (Madry et al.).
        random_start: start each restart at a uniform point of the ball (else at ``x``).
        restarts: independent restarts (>= 1).
        mask: 1 for attackable coordinates, 0 for frozen ones (broadcastable to ``x``).
        clip_min, clip_max: valid input range (scalars or per-coordinate arrays).
        objective: ``(logits, y) -> [B]`` per-example loss to increase (TRADES passes a KL).
        seed: op seed for the random starts.
        start_noise: if set, start at ``x + start_noise * N(0, 1)`` instead of uniform (TRADES).

    Returns:
        Adversarial inputs (gradient-stopped) with the shape of ``x``.
    """
    _check_norm(norm)
    x = tf.stop_gradient(tf.convert_to_tensor(x))
    mask, clip_min, clip_max = (_as_tensor(v, x.dtype) for v in (mask, clip_min, clip_max))
    eps = tf.cast(epsilon, x.dtype)
    alpha = tf.cast(step_size if step_size is not None else 2.5 * epsilon / steps, x.dtype)
    track_success = objective is cross_entropy

    def one_run(r):
        if start_noise is not None:
            delta = tf.random.normal(tf.shape(x), dtype=x.dtype, seed=seed) * start_noise
        elif random_start:
            delta = random_in_ball(tf.shape(x), eps, norm, seed=None if seed is None else seed + r, dtype=x.dtype)
        else:
            delta = tf.zeros_like(x)
        x_adv = _constrain(x, delta, eps, norm, mask, clip_min, clip_max)

        def step(i, x_adv):
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                loss = tf.reduce_sum(objective(model_fn(x_adv), y))
            grad = tape.gradient(loss, x_adv)
            x_adv = tf.stop_gradient(x_adv + alpha * _direction(grad, norm, mask))
            return i + 1, _constrain(x, x_adv - x, eps, norm, mask, clip_min, clip_max)

        # An explicit while_loop (not a Python loop) keeps the graph small inside train_step.
        _, x_adv = tf.while_loop(lambda i, _: i < steps, step, (tf.constant(0), x_adv))
        return tf.stop_gradient(x_adv)

    def score(x_adv):
        logits = model_fn(x_adv)
        s = objective(logits, y)
        if track_success:
            wrong = tf.cast(tf.not_equal(tf.argmax(logits, axis=-1, output_type=tf.int32),
                                         tf.cast(y, tf.int32)), s.dtype)
            s = s + wrong * 1e6  # any misclassifying restart beats any correct one
        return s

    best = one_run(0)
    if restarts > 1:
        best_score = score(best)
        for r in range(1, int(restarts)):
            cand = one_run(r)
            cand_score = score(cand)
            better = cand_score > best_score
            best = tf.where(_expand(better, best), cand, best)
            best_score = tf.maximum(cand_score, best_score)
    return tf.stop_gradient(best)


def random_noise(model_fn: Callable, x, y, epsilon: float, *, norm: str = "linf", samples: int = 10,
                 mask=None, clip_min=None, clip_max=None, seed=None):
    """Black-box baseline: the worst of ``samples`` uniform draws from the ε-ball (per example).

    A white-box attack that does *not* beat this baseline is a sign of gradient masking
    (Athalye, Carlini & Wagner 2018, "Obfuscated Gradients Give a False Sense of Security").
    """
    _check_norm(norm)
    x = tf.convert_to_tensor(x)
    mask, clip_min, clip_max = (_as_tensor(v, x.dtype) for v in (mask, clip_min, clip_max))
    best, best_score = x, None
    for s in range(int(samples)):
        delta = random_in_ball(tf.shape(x), tf.cast(epsilon, x.dtype), norm,
                               seed=None if seed is None else seed + s, dtype=x.dtype)
        cand = _constrain(x, delta, epsilon, norm, mask, clip_min, clip_max)
        logits = model_fn(cand)
        sc = cross_entropy(logits, y) + 1e6 * tf.cast(
            tf.not_equal(tf.argmax(logits, -1, output_type=tf.int32), tf.cast(y, tf.int32)), x.dtype)
        if best_score is None:
            best, best_score = cand, sc
        else:
            better = sc > best_score
            best = tf.where(_expand(better, best), cand, best)
            best_score = tf.maximum(sc, best_score)
    return best


def embedding_pgd(embed_fn: Callable, head_fn: Callable, inputs, y, epsilon: float, *, norm: str = "l2",
                  steps: int = 10, restarts: int = 1, token_mask=None, **kwargs):
    """PGD in input-embedding space for text models (discrete tokens cannot be perturbed directly).

    The model is split into ``embed_fn(inputs) -> E [B, T, D]`` and ``head_fn(E) -> logits``;
    the attack perturbs ``E`` (per token by default with an L2 ball over the whole sequence), leaving
    padding positions (``token_mask == 0``) untouched. Report results as *embedding-space*
    robustness: such perturbations need not correspond to any real text (Miyato et al. 2017).

    Args:
        embed_fn: maps the model's raw inputs (token ids, dicts) to embeddings.
        head_fn: maps embeddings to logits.
        inputs: raw inputs for ``embed_fn``.
        y: labels ``[B]``.
        epsilon, norm, steps, restarts: as in :func:`pgd`.
        token_mask: ``[B, T]`` 1 for real tokens, 0 for padding.
        **kwargs: more :func:`pgd` arguments (``step_size``, ``seed``, ...).

    Returns:
        ``(E, E_adv)``: clean and adversarial embeddings.
    """
    emb = tf.stop_gradient(embed_fn(inputs))
    mask = None
    if token_mask is not None:
        mask = tf.cast(token_mask, emb.dtype)[..., None]
    adv = pgd(head_fn, emb, y, epsilon, norm=norm, steps=steps, restarts=restarts, mask=mask, **kwargs)
    return emb, adv
