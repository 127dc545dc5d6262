"""tfresp.audits on a plain keras.Sequential trained in a plain model.fit, each checked against an independent
oracle (fairlearn's MetricFrame, a hand-written FGSM loop, sklearn's roc_auc_score)."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from fairlearn.metrics import (MetricFrame, demographic_parity_difference, equalized_odds_difference,
                               false_positive_rate, selection_rate, true_positive_rate)
from sklearn.metrics import roc_auc_score

import tfresp
from tfresp import audits


def make_data(n, seed):
    rng = np.random.default_rng(seed)
    g = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    x = rng.normal(size=(n, 5)).astype("float32")
    x[:, 0] += (g == "a") * 0.8  # group a is selected more often
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.7, size=n) > 0.4).astype("int64")
    return x, y, g


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    x, y, g = make_data(900, 0)
    model = keras.Sequential([keras.layers.Dense(32, activation="relu", input_shape=(5,)),
                              keras.layers.Dense(2)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=40, batch_size=64, verbose=0)  # long enough to overfit a little (for the MIA)
    xt, yt, gt = make_data(600, 1)
    return model, (x, y, g), (xt, yt, gt)


def probabilities(model, x):
    return tf.nn.softmax(model.predict(x, verbose=0)).numpy()


def test_fairness_equals_fairlearn_metricframe(trained):
    model, _, (x, y, g) = trained
    sec = audits.fairness(model, x, y, {"grp": g}, bootstrap=20, min_group_size=10)
    pred = (probabilities(model, x)[:, 1] >= 0.5).astype(int)
    frame = MetricFrame(metrics={"selection_rate": selection_rate, "true_positive_rate": true_positive_rate,
                                 "false_positive_rate": false_positive_rate},
                        y_true=y, y_pred=pred, sensitive_features=g)
    rep = sec["grp"]
    assert sorted(rep["by_group"]) == ["a", "b", "c"]
    for group, row in frame.by_group.iterrows():
        for metric, value in row.items():
            assert rep["by_group"][group][metric] == pytest.approx(value, abs=1e-12), (group, metric)
    assert rep["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y, pred, sensitive_features=g), abs=1e-12)
    assert rep["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(y, pred, sensitive_features=g), abs=1e-12)
    assert rep["demographic_parity_difference"] > 0.05  # the data were built unfair: the check is not vacuous
    lo, hi = rep["demographic_parity_difference_ci"]
    assert lo <= rep["demographic_parity_difference"] <= hi
    assert sec["demographic_parity_difference_attribute"] == "grp" and sec["positive_class"] == "1"
    assert not audits.validate({"fairness": sec})


def test_probability_model_gives_the_same_fairness_numbers(trained):
    model, _, (x, y, g) = trained
    probs = keras.Sequential([model, keras.layers.Softmax()])  # the same model, outputting probabilities
    a = audits.fairness(model, x, y, {"grp": g}, bootstrap=0)
    b = audits.fairness(probs, x, y, {"grp": g}, bootstrap=0)
    for key in ("demographic_parity_difference", "equalized_odds_difference"):
        assert b["grp"][key] == pytest.approx(a["grp"][key], abs=1e-6)


def test_robustness_fgsm_equals_a_hand_written_loop(trained):
    model, _, (x, y, _) = trained
    eps, n = 0.3, 200
    sec = audits.robustness(model, x, y, eps=[eps], clip=(-6.0, 6.0), eval_examples=n, eval_steps=5, restarts=1,
                            noise_samples=2, sensitivity=False)
    xs, ys = tf.constant(x[:n]), y[:n]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        loss = keras.losses.sparse_categorical_crossentropy(ys, model(xs, training=False), from_logits=True)
    x_adv = np.clip(x[:n] + eps * np.sign(tape.gradient(loss, xs).numpy()), -6.0, 6.0)
    hand = float(np.mean(np.argmax(model.predict(x_adv, verbose=0), axis=1) == ys))
    clean = float(np.mean(np.argmax(model.predict(x[:n], verbose=0), axis=1) == ys))
    assert sec["clean_accuracy"] == pytest.approx(clean, abs=1e-12)
    assert sec["fgsm@0.3"]["accuracy"] == pytest.approx(hand, abs=1.5 / n)  # at most one float-rounding flip
    assert hand < clean - 0.05  # the attack does something
    assert sec["pgd@0.3"]["accuracy"] <= sec["fgsm@0.3"]["accuracy"] + 2 / n
    assert sec["fgsm@0.3"]["max_perturbation"] <= eps + 1e-6
    assert not audits.validate({"robustness": sec})


def test_membership_auc_equals_sklearn_on_the_same_scores(trained):
    model, (xtr, ytr, _), (xte, yte, _) = trained
    m = 600  # all holdout rows, as many training rows (the audit samples a balanced set)
    sec = audits.membership(model, train=(xtr, ytr), holdout=(xte, yte), max_examples=m, seed=3)
    idx = np.sort(np.random.default_rng(3).choice(len(ytr), m, replace=False))  # the audit's documented draw
    loss = lambda xx, yy: keras.losses.sparse_categorical_crossentropy(  # noqa: E731
        yy, model.predict(xx, verbose=0), from_logits=True).numpy()
    scores = -np.r_[loss(xtr[idx], ytr[idx]), loss(xte, yte)]
    member = np.r_[np.ones(m), np.zeros(m)]
    assert sec["attacks"]["loss_threshold"]["roc_auc"] == pytest.approx(roc_auc_score(member, scores), abs=1e-4)
    assert sec["members"] == sec["nonmembers"] == m
    assert sec["mia_auc"] >= sec["attacks"]["loss_threshold"]["roc_auc"]


def test_audit_entry_point_on_a_model(trained):
    model, (xtr, ytr, _), (xte, yte, gte) = trained
    report = tfresp.audit(model, data={"train": (xtr, ytr), "test": (xte, yte)}, groups={"grp": gte},
                          audits=["performance", "fairness", "membership"],
                          options={"fairness": {"bootstrap": 0}, "membership": {"max_examples": 300}})
    assert set(report) >= {"evaluation", "fairness", "privacy"} and "robustness" not in report
    acc = float(np.mean(np.argmax(model.predict(xte, verbose=0), axis=1) == yte))
    assert report["evaluation"]["test"]["accuracy"] == pytest.approx(acc, abs=1e-12)
    assert report["privacy"]["audit"]["members"] == 300 and report["privacy"]["epsilon"] is None
    assert not audits.validate(report)


def test_bad_inputs_are_named():
    model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
    x = np.zeros((10, 3), "float32")
    with pytest.raises(tfresp.DataError, match="`y`"):
        audits.performance(model, x, np.zeros(10, "float32"))
    with pytest.raises(tfresp.DataError, match="`groups`"):
        audits.fairness(model, x, np.zeros(10, "int64"), {"g": ["a"] * 9})
    with pytest.raises(tfresp.ConfigError, match="fairness.bootstrapp"):
        audits.fairness(model, x, np.zeros(10, "int64"), {"g": ["a"] * 10}, bootstrapp=3)
    with pytest.raises(tfresp.ConfigError, match="audits"):
        tfresp.audit(model, data=(x, np.zeros(10, "int64")), audits=["nope"])
    with pytest.raises(tfresp.ConfigError, match="options"):
        tfresp.audit(model, data=(x, np.zeros(10, "int64")), options={"fairnes": {}})


def test_dict_inputs_and_dataframe_groups(trained):
    import pandas as pd

    model, _, (x, y, g) = trained
    a, b = keras.Input((2,), name="a"), keras.Input((3,), name="b")
    two_inputs = keras.Model({"a": a, "b": b}, model(keras.layers.Concatenate()([a, b])))  # same weights
    xd = {"a": x[:, :2], "b": x[:, 2:]}
    frame = pd.DataFrame({"grp": g, "half": np.where(np.arange(len(g)) % 2, "odd", "even")})
    sec = audits.fairness(two_inputs, xd, y, frame, bootstrap=0)
    ref = audits.fairness(model, x, y, {"grp": g, "half": frame["half"].to_numpy()}, bootstrap=0)
    assert sec["attributes"] == ["grp", "half"] and "grp_x_half" in sec["intersectional"]
    assert sec["grp"]["by_group"] == ref["grp"]["by_group"]
    assert sec["intersectional"] == ref["intersectional"]
