"""Attack strength and adversarial training on real data (sklearn digits, small CNN, a few epochs)."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfresp.config import load_config
from tfresp.data.dataset import make_dataset, prepare
from tfresp.models.base import ResponsibleModel
from tfresp.models.cnn import build_cnn
from tfresp.robustness import attacks
from tfresp.robustness.training import AttackSpace, madry_transform, trades_term

SPACE = AttackSpace(None, 0.0, 1.0)


@pytest.fixture(scope="module")
def digits():
    return prepare(load_config({"data": {"source": "digits", "label": "label"}, "model": {"kind": "cnn"}}))


def _train(data, robustness=None, epochs=6, seed=0):
    keras.utils.set_random_seed(seed)
    core = build_cnn((8, 8, 1), data.num_classes, [16, 32])
    model = ResponsibleModel(core)
    if robustness is not None:
        rcfg = load_config({"data": {"source": "digits", "label": "label"}, "robustness": robustness}).robustness
        if rcfg.train == "madry":
            model.input_transform = madry_transform(rcfg, SPACE)
        else:
            model.per_example_losses.append(trades_term(rcfg, SPACE))
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(make_dataset(data.train.x, data.train.y, {}, 64, True, seed), epochs=epochs, verbose=0)
    return core


def _acc(core, x, y):
    return float(np.mean(np.argmax(core(x, training=False).numpy(), axis=1) == y))


@pytest.fixture(scope="module")
def clean_core(digits):
    return _train(digits, epochs=6)


def test_pgd_at_least_as_strong_as_fgsm_and_noise(digits, clean_core):
    x, y = digits.test.x[:200], digits.test.y[:200]
    clean = _acc(clean_core, x, y)
    assert clean > 0.8
    for eps in (0.05, 0.1):
        a_pgd = _acc(clean_core, attacks.pgd(clean_core, x, y, eps, steps=20, restarts=2, clip_min=0.0,
                                             clip_max=1.0, seed=0), y)
        a_fgsm = _acc(clean_core, attacks.fgsm(clean_core, x, y, eps, clip_min=0.0, clip_max=1.0), y)
        a_noise = _acc(clean_core, attacks.random_noise(clean_core, x, y, eps, samples=5, clip_min=0.0,
                                                        clip_max=1.0, seed=0), y)
        assert a_pgd <= a_fgsm + 0.01
        assert a_pgd < a_noise
        assert a_pgd < clean


def test_more_restarts_never_weaker(digits, clean_core):
    x, y = digits.test.x[:150], digits.test.y[:150]
    one = attacks.pgd(clean_core, x, y, 0.05, steps=5, restarts=1, clip_min=0.0, clip_max=1.0, seed=4)
    three = attacks.pgd(clean_core, x, y, 0.05, steps=5, restarts=3, clip_min=0.0, clip_max=1.0, seed=4)
    # restart 0 of the 3-restart run is the 1-restart run (same seed): per example we keep the stronger one
    wrong_one = np.argmax(clean_core(one).numpy(), 1) != y
    wrong_three = np.argmax(clean_core(three).numpy(), 1) != y
    assert np.all(wrong_three[wrong_one])


def test_robust_accuracy_vanishes_at_large_epsilon(digits, clean_core):
    x, y = digits.test.x[:150], digits.test.y[:150]
    adv = attacks.pgd(clean_core, x, y, 1.0, steps=20, restarts=1, clip_min=0.0, clip_max=1.0, seed=0)
    assert _acc(clean_core, adv, y) <= 0.02


def test_madry_training_improves_robust_accuracy(digits, clean_core):
    robust_core = _train(digits, {"train": "madry", "epsilon": 0.1, "steps": 5}, epochs=6)
    x, y = digits.test.x, digits.test.y

    def robust_acc(core):
        return _acc(core, attacks.pgd(core, x, y, 0.1, steps=20, restarts=1, clip_min=0.0, clip_max=1.0,
                                      seed=0), y)

    r_clean, r_madry = robust_acc(clean_core), robust_acc(robust_core)
    assert r_madry > r_clean + 0.15, (r_clean, r_madry)


def test_trades_term_is_per_example(digits):
    """The TRADES term of example i must not depend on the rest of the batch (DP composes per example)."""
    keras.utils.set_random_seed(3)
    core = build_cnn((8, 8, 1), 10, [8])
    model = ResponsibleModel(core)
    rcfg = load_config({"data": {"source": "digits", "label": "label"},
                        "robustness": {"train": "trades", "epsilon": 0.1, "steps": 3}}).robustness
    term = trades_term(rcfg, SPACE)
    xa, ya = digits.test.x[:8].copy(), digits.test.y[:8].copy()
    xb, yb = xa.copy(), ya.copy()
    xb[4:], yb[4:] = digits.test.x[20:24], digits.test.y[20:24]  # change the other half of the batch

    def run(x, y):
        tf.random.set_seed(0)  # same random start draws for both batches
        x, y = tf.constant(x), tf.constant(y)
        return term(model, x, y, core(x), {"sample_weight": tf.ones([8])}, False).numpy()

    a, b = run(xa, ya), run(xb, yb)
    assert np.all(a >= 0) and np.any(a > 0)
    np.testing.assert_allclose(a[:4], b[:4], rtol=1e-5, atol=1e-7)
    assert not np.allclose(a[4:], b[4:])


def test_epsilon_warmup_ramps_with_optimizer_steps():
    from tfresp.robustness.training import epsilon_at

    rcfg = load_config({"data": {"source": "digits", "label": "label"},
                        "robustness": {"train": "madry", "epsilon": 0.2, "epsilon_warmup": 0.5}}).robustness
    core = build_cnn((8, 8, 1), 10, [4])
    model = ResponsibleModel(core)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    _ = model.optimizer.iterations
    got = []
    for step in (0, 9, 49, 80):
        model.optimizer.iterations.assign(step)
        got.append(float(epsilon_at(model, rcfg, total_steps=100)))
    np.testing.assert_allclose(got, [0.2 * 1 / 50, 0.2 * 10 / 50, 0.2, 0.2], rtol=1e-6)
    assert epsilon_at(model, rcfg.model_copy(update={"epsilon_warmup": 0.0}), 100) == 0.2
