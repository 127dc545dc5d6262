"""Attacks: constraints (ε-ball, valid range, frozen dims), a NumPy reference, and attack strength."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfresp.robustness import attacks


def _linear_model(d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, k)).astype(np.float32)
    b = rng.normal(size=(k,)).astype(np.float32)
    return w, b, (lambda x: tf.matmul(x, w) + b)


def _numpy_pgd_linear(w, b, x, y, eps, steps, alpha, lo, hi, mask):
    """Slow, obviously-correct reference: PGD L∞ on a linear softmax model with the analytic gradient."""
    x_adv = x.copy()
    for _ in range(steps):
        for i in range(len(x)):
            z = x_adv[i] @ w + b
            p = np.exp(z - z.max())
            p /= p.sum()
            onehot = np.eye(w.shape[1])[y[i]]
            grad = w @ (p - onehot)  # d CE / d x
            step = x_adv[i] + alpha * np.sign(grad * mask)
            step = np.clip(step, x[i] - eps, x[i] + eps)
            step = x[i] + (step - x[i]) * mask
            x_adv[i] = np.clip(step, lo, hi)
    return x_adv


def test_pgd_matches_numpy_reference_on_linear_model():
    w, b, model = _linear_model()
    rng = np.random.default_rng(1)
    x = rng.uniform(0.2, 0.8, size=(16, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=16)
    mask = np.array([1, 1, 0, 1, 0, 1], np.float32)
    ours = attacks.pgd(model, x, y, 0.15, steps=7, step_size=0.04, random_start=False, mask=mask[None],
                       clip_min=0.0, clip_max=1.0).numpy()
    ref = _numpy_pgd_linear(w, b, x, y, 0.15, 7, 0.04, 0.0, 1.0, mask)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_fgsm_matches_one_step_reference():
    w, b, model = _linear_model(seed=3)
    rng = np.random.default_rng(2)
    x = rng.uniform(0.0, 1.0, size=(10, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=10)
    ones = np.ones(6, np.float32)
    ours = attacks.fgsm(model, x, y, 0.1, clip_min=0.0, clip_max=1.0).numpy()
    ref = _numpy_pgd_linear(w, b, x, y, 0.1, 1, 0.1, 0.0, 1.0, ones)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_stays_in_ball_and_valid_range(norm):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(16, activation="relu", input_shape=(12,)), keras.layers.Dense(4)])
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(64, 12)).astype(np.float32)
    x[:, :3] = 0.0  # on the lower edge of the valid range
    y = rng.integers(0, 4, size=64)
    eps = 0.3
    adv = attacks.pgd(model, x, y, eps, norm=norm, steps=15, restarts=3, step_size=0.2, clip_min=0.0,
                      clip_max=1.0, seed=1).numpy()
    d = adv - x
    norms = np.abs(d).max(axis=1) if norm == "linf" else np.linalg.norm(d, axis=1)
    assert norms.max() <= eps + 1e-5
    assert norms.max() > 0.5 * eps  # it did move
    assert adv.min() >= 0.0 and adv.max() <= 1.0


def test_masked_categorical_dims_untouched_with_per_dim_ranges():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.layers.Dense(8, activation="tanh", input_shape=(6,)), keras.layers.Dense(2)])
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(size=(32, 3)), np.eye(3)[rng.integers(0, 3, 32)]], axis=1).astype(np.float32)
    y = rng.integers(0, 2, size=32)
    mask = np.array([[1, 1, 1, 0, 0, 0]], np.float32)
    lo, hi = x.min(axis=0, keepdims=True), x.max(axis=0, keepdims=True)
    for fn in (lambda: attacks.pgd(model, x, y, 1.0, steps=10, restarts=2, mask=mask, clip_min=lo, clip_max=hi),
               lambda: attacks.fgsm(model, x, y, 1.0, mask=mask, clip_min=lo, clip_max=hi),
               lambda: attacks.random_noise(model, x, y, 1.0, samples=3, mask=mask, clip_min=lo, clip_max=hi)):
        adv = fn().numpy()
        np.testing.assert_array_equal(adv[:, 3:], x[:, 3:])
        assert np.all(adv >= lo - 1e-6) and np.all(adv <= hi + 1e-6)
        assert np.abs(adv[:, :3] - x[:, :3]).max() > 0


def test_random_in_ball_l2_radius_and_spread():
    s = attacks.random_in_ball(tf.constant([2000, 5]), 0.5, "l2", seed=3).numpy()
    r = np.linalg.norm(s, axis=1)
    assert r.max() <= 0.5 + 1e-6
    # uniform in a 5-ball: P(r <= 0.5 * 0.5) = 0.5^5 ~ 3%
    assert 0.0 < np.mean(r <= 0.25) < 0.08


def test_bad_norm_is_rejected():
    _, _, model = _linear_model()
    with pytest.raises(ValueError, match="norm"):
        attacks.fgsm(model, np.zeros((2, 6), np.float32), np.zeros(2, np.int64), 0.1, norm="l1")


def test_embedding_pgd_leaves_padding_untouched():
    keras.utils.set_random_seed(2)
    emb = keras.layers.Embedding(50, 8)
    head = keras.Sequential([keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)])
    ids = np.random.default_rng(0).integers(1, 50, size=(6, 5))
    token_mask = np.ones((6, 5), np.float32)
    token_mask[:, 3:] = 0
    y = np.zeros(6, np.int64)
    e, e_adv = attacks.embedding_pgd(emb, head, ids, y, 0.5, norm="l2", steps=5, token_mask=token_mask, seed=0)
    d = (e_adv - e).numpy()
    np.testing.assert_array_equal(d[:, 3:], 0.0)
    assert np.linalg.norm(d.reshape(6, -1), axis=1).max() <= 0.5 + 1e-5
    assert np.abs(d).max() > 0
