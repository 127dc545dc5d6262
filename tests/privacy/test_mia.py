"""Membership-inference audit: synthetic oracles, an overfit non-private model, and a DP model."""
import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from scipy.stats import binomtest

from tests.conftest import tiny_adult
from tfresp.config import load_config
from tfresp.data.dataset import make_dataset, prepare
from tfresp.models.base import ResponsibleModel
from tfresp.models.mlp import build_mlp
from tfresp.privacy import accounting, clipping, mia
from tfresp.privacy.sampling import poisson_dataset


def test_epsilon_lower_bound_formula_and_clopper_pearson():
    # one operating point TPR=0.5, FPR=0.05, δ=0 -> ε >= log(10); and the complementary bound
    assert mia.epsilon_lower_bound([0.5], [0.05], 0.0) == pytest.approx(math.log(10))
    assert mia.epsilon_lower_bound([0.9], [0.5], 0.0) == pytest.approx(math.log(0.5 / 0.1))
    # with counts: TPR -> its exact lower 95% bound, FPR -> its exact upper 95% bound (scipy's binomtest as oracle)
    n = 200
    lo = binomtest(100, n).proportion_ci(confidence_level=0.90, method="exact").low
    hi = binomtest(10, n).proportion_ci(confidence_level=0.90, method="exact").high
    got = mia.epsilon_lower_bound([0.5], [0.05], 0.0, n_pos=n, n_neg=n)
    assert got == pytest.approx(max(math.log(lo / hi), math.log((1 - hi) / (1 - lo))), rel=1e-6)
    assert got < math.log(10)


def test_attacks_on_synthetic_outputs():
    rng = np.random.default_rng(0)
    n = 1000

    def probs(conf):
        return np.column_stack([1 - conf, conf])

    y = np.ones(n, int)
    same = mia.membership_inference_audit(probs(rng.uniform(0.3, 0.9, n)), y, probs(rng.uniform(0.3, 0.9, n)), y,
                                          delta=1e-5)
    assert abs(same["mia_auc"] - 0.5) < 0.05 and same["epsilon_lower_bound"] < 0.5
    sep = mia.membership_inference_audit(probs(rng.uniform(0.95, 0.999, n)), y, probs(rng.uniform(0.3, 0.9, n)),
                                         y, delta=1e-5, epsilon=1.0)
    for name in ("loss_threshold", "logistic_regression", "lira_offline"):
        assert sep["attacks"][name]["roc_auc"] > 0.99
        assert sep["attacks"][name]["tpr_at_1pct_fpr"] > 0.9
    assert sep["advantage"] > 0.95
    assert sep["epsilon_lower_bound"] > 3.0 and sep["exceeds_claimed_epsilon"] is True


def _data(n=600):
    cfg = load_config(tiny_adult(data={"max_rows": n, "split": {"validation": 0.0}}, model={"hidden": [256, 256]}))
    return cfg, prepare(cfg)


def _audit(core, data):
    p = lambda x: core(x, training=False).numpy()  # noqa: E731
    return mia.membership_inference_audit(p(data.train.x), data.train.y, p(data.test.x), data.test.y, delta=1e-3,
                                          member_groups=data.train.groups, nonmember_groups=data.test.groups,
                                          from_logits=True)


def test_overfit_model_is_vulnerable_and_dp_model_is_not():
    cfg, data = _data()
    keras.utils.set_random_seed(0)
    core = build_mlp(data.input_shape[0], 2, hidden=[256, 256])
    core.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    core.fit(data.train.x, data.train.y, epochs=150, batch_size=64, verbose=0)
    overfit = _audit(core, data)
    # train accuracy ~1.0 vs test ~0.82: misclassified non-members have huge losses, so the loss threshold has a
    # large advantage even where its AUC is modest; the learned attack combines the features.
    assert overfit["mia_auc"] > 0.6, overfit["attacks"]
    assert overfit["attacks"]["loss_threshold"]["advantage"] > 0.15
    assert overfit["epsilon_lower_bound"] > 1.5
    assert set(overfit["by_group"]["sex"]) == {"Female", "Male"}
    male = overfit["by_group"]["sex"]["Male"]
    assert male["members"] == int((data.train.groups["sex"] == "Male").sum()) and male["mia_auc"] > 0.55

    # DP-SGD at ε = 1 with the same architecture
    keras.utils.set_random_seed(0)
    n, b, epochs = len(data.train), 64, 15
    q, spe = b / n, math.ceil(n / b)
    sigma = accounting.calibrate_noise(1.0, 1e-3, q, epochs * spe, "rdp")
    model = ResponsibleModel(build_mlp(data.input_shape[0], 2, hidden=[256, 256]))
    model.gradient_fn = clipping.make_gradient_fn("ghost", 1.0, sigma, expected_batch_size=q * n)
    model.compile(keras.optimizers.Adam(3e-3))
    model.fit(poisson_dataset(data.train.x, data.train.y, {}, q, spe, seed=0), epochs=epochs, verbose=0)
    private = _audit(model.core, data)
    assert private["mia_auc"] <= 0.56, private["attacks"]
    assert private["mia_auc"] < overfit["mia_auc"] - 0.08
    assert private["epsilon_lower_bound"] <= 1.0
