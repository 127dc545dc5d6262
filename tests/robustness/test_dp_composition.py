"""Adversarial training composes with DP-SGD: per-example clipping covers the adversarial loss."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfresp.config import load_config
from tfresp.models.base import ResponsibleModel
from tfresp.robustness import attacks
from tfresp.robustness.training import AttackSpace, madry_transform

clipping = pytest.importorskip("tfresp.privacy.clipping")


def test_vectorized_dp_clipping_of_fgsm_adversarial_loss_matches_loop_reference():
    keras.utils.set_random_seed(0)
    core = keras.Sequential([keras.layers.Dense(6, activation="tanh", input_shape=(5,)), keras.layers.Dense(3)])
    model = ResponsibleModel(core)
    rcfg = load_config({"robustness": {"train": "madry", "attack": "fgsm", "epsilon": 0.3}}).robustness
    mask = np.array([[1, 1, 1, 0, 0]], np.float32)
    space = AttackSpace(mask, -2.0, 2.0)
    model.input_transform = madry_transform(rcfg, space)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=8)
    extras = {"sample_weight": np.ones(8, np.float32)}
    clip = 0.05
    got, losses, _, norms = clipping.clipped_sum_vectorized(model, tf.constant(x), tf.constant(y),
                                                            {k: tf.constant(v) for k, v in extras.items()}, clip)
    # slow reference: per example, FGSM on that example alone, gradient of the adversarial CE, clip, sum
    ref = [np.zeros(v.shape, np.float32) for v in core.trainable_variables]
    for i in range(8):
        xa = attacks.fgsm(core, x[i:i + 1], y[i:i + 1], 0.3, mask=mask, clip_min=-2.0, clip_max=2.0)
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(y[i:i + 1], core(xa), from_logits=True)[0]
        g = tape.gradient(loss, core.trainable_variables)
        n = float(tf.linalg.global_norm(g))
        assert np.isclose(float(norms[i]), n, rtol=1e-4)
        assert np.isclose(float(losses[i]), float(loss), rtol=1e-5)
        for r, gi in zip(ref, g):
            r += gi.numpy() * clip / max(n, clip)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-4, atol=1e-6)
    # the adversarial loss is what gets clipped: it is larger than the clean loss
    clean = keras.losses.sparse_categorical_crossentropy(y, core(x), from_logits=True).numpy()
    assert np.mean(losses.numpy()) > np.mean(clean)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["madry", "trades"])
def test_fit_with_privacy_and_adversarial_training(tmp_path, method):
    """End to end: DP-SGD (vectorized clipping) over the adversarial objective (~1-2 min each on 2 cores)."""
    import tfresp
    from tests.conftest import tiny_adult

    cfg = tiny_adult(privacy={"target_epsilon": 8.0},
                     robustness={"train": method, "epsilon": 0.1, "steps": 3, "eval_epsilons": [0.1],
                                 "eval_steps": 8, "restarts": 1, "eval_examples": 100, "noise_samples": 2,
                                 "sensitivity": False},
                     export={"saved_model": False})
    res = tfresp.fit(cfg, out=tmp_path / "run", quiet=True)
    assert res.report["privacy"]["epsilon"] <= 8.0 + 1e-6
    assert res.report["privacy"]["clipping"]["mode"] == "vectorized"
    assert 0.0 <= res.report["robustness"]["pgd@0.1"]["accuracy"] <= res.report["robustness"]["clean_accuracy"]
