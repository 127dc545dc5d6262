"""Mitigation pieces checked against independent references (no full tfresp run)."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfresp.fairness import adversarial, clp, postprocess, reweigh
from tfresp.fairness.mmd import make_mmd_loss, masked_mmd2
from tfresp.models.base import ResponsibleModel


def test_kamiran_calders_weights_make_label_independent_of_group():
    rng = np.random.default_rng(0)
    g = rng.integers(0, 3, 5000)
    y = (rng.random(5000) < np.array([0.1, 0.3, 0.5])[g]).astype(int)
    w, table = reweigh.kamiran_calders_weights(g, y, 3, 2)
    assert w.mean() == pytest.approx(1.0, abs=1e-5)
    # weighted base rate is the overall base rate in every group
    for k in range(3):
        m = g == k
        assert np.sum(w[m] * y[m]) / np.sum(w[m]) == pytest.approx(y.mean(), abs=1e-5)
    # the formula P(g)P(y)/P(g,y), counted by hand for one cell
    m = (g == 0) & (y == 1)
    expected = (np.mean(g == 0) * np.mean(y == 1)) / np.mean(m)
    assert table[0, 1] == pytest.approx(expected)


def test_laplace_counts_are_noisy_and_positive():
    counts = np.array([[100, 5], [0, 40]])
    noisy = reweigh.laplace_counts(counts, epsilon=0.5, seed=0)
    assert noisy.shape == counts.shape and np.all(noisy >= 1.0) and not np.allclose(noisy, counts)
    many = np.stack([reweigh.laplace_counts(counts, 1.0, s) for s in range(400)])
    assert np.mean(many[:, 0, 0]) == pytest.approx(100, abs=0.3)  # unbiased away from the floor


def _mmd2_loop(x, y, s):
    k = lambda a, b: np.exp(-(a - b) ** 2 / (2 * s * s))  # noqa: E731
    kxx = np.mean([k(a, b) for a in x for b in x])
    kyy = np.mean([k(a, b) for a in y for b in y])
    kxy = np.mean([k(a, b) for a in x for b in y])
    return kxx + kyy - 2 * kxy


def test_masked_mmd_matches_python_loop():
    rng = np.random.default_rng(1)
    s = rng.random(12).astype(np.float32)
    a = (np.arange(12) < 5).astype(np.float32)
    got = float(masked_mmd2(tf.constant(s), tf.constant(a), tf.constant(1 - a), 0.1))
    assert got == pytest.approx(_mmd2_loop(s[:5], s[5:], 0.1), rel=1e-4)
    assert float(masked_mmd2(tf.constant(s), tf.constant(a), tf.zeros(12), 0.1)) == 0.0


def test_mmd_loss_respects_label_slices():
    # scores differ between groups only among y=0 rows: equal opportunity (y=1 slice) sees no gap
    y = tf.constant([1, 1, 1, 1, 0, 0, 0, 0])
    g = tf.constant([0, 1, 0, 1, 0, 1, 0, 1])
    p1 = np.array([.8, .8, .7, .7, .1, .9, .1, .9], np.float32)
    logits = tf.constant(np.stack([np.zeros(8), np.log(p1 / (1 - p1))], 1), tf.float32)
    extras = {"fair_group": g}
    eopp = make_mmd_loss("equal_opportunity", 2, 1.0, 0.1)(None, None, y, logits, extras, True)
    eo = make_mmd_loss("equalized_odds", 2, 1.0, 0.1)(None, None, y, logits, extras, True)
    assert float(eopp) == pytest.approx(0.0, abs=1e-6)
    assert float(eo) > 0.1


def test_gradient_reversal_flips_and_scales_gradient():
    x = tf.constant([1.0, 2.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.reduce_sum(adversarial.gradient_reversal(x, 0.5) * tf.constant([3.0, 4.0]))
    np.testing.assert_allclose(tape.gradient(out, x).numpy(), [-1.5, -2.0])


def test_adversary_variables_are_core_variables_and_get_trained():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    n = 512
    g = rng.integers(0, 2, n)
    x = np.concatenate([rng.normal(size=(n, 3)), g[:, None] + rng.normal(0, 0.1, (n, 1))], 1).astype(np.float32)
    y = ((x[:, 0] + x[:, 3]) > 0.5).astype(np.int64)
    inp = keras.Input((4,))
    core = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Dense(8, activation="relu")(inp)))
    holder = adversarial.AdversaryHolder(2, 4, 8, name=adversarial.HOLDER_NAME)
    wrapped = adversarial.attach(core, holder)
    n_adv = len(holder.adversary.trainable_variables)
    assert len(wrapped.trainable_variables) == len(core.trainable_variables) + n_adv
    np.testing.assert_allclose(wrapped(x[:5]).numpy(), core(x[:5]).numpy())
    model = ResponsibleModel(wrapped)
    model.per_example_losses.append(adversarial.make_adversarial_loss(holder, "equalized_odds", 1.0))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = [v.numpy().copy() for v in holder.adversary.trainable_variables]
    ds = tf.data.Dataset.from_tensor_slices(
        (x, y, {"sample_weight": np.ones(n, np.float32), "fair_group": g.astype(np.int32)})).batch(64)
    model.fit(ds, epochs=2, verbose=0)
    after = holder.adversary.trainable_variables
    assert any(not np.allclose(b, a.numpy()) for b, a in zip(before, after))


def test_group_thresholds_meet_tolerance_and_tf_matches_numpy():
    rng = np.random.default_rng(0)
    n = 6000
    g = rng.choice(["F", "M"], n, p=[0.35, 0.65])
    y = (rng.random(n) < np.where(g == "M", 0.3, 0.12)).astype(int)
    prob = np.clip(0.15 + 0.5 * y + 0.12 * (g == "M") + rng.normal(0, 0.18, n), 0, 1)
    for constraint in ("demographic_parity", "equal_opportunity", "equalized_odds"):
        fitted = postprocess.fit_group_thresholds(y, prob, g, constraint, tolerance=0.02)
        assert fitted["refused"] is None
        p = postprocess.positive_probability(prob, g, fitted)
        assert postprocess.expected_gap(y, p, g, constraint, 30) <= 0.02
    # the served TF post-processor gives the same probabilities; unknown groups use the default threshold
    post = postprocess.GroupThresholds(["sex"], fitted, ["sex"], seed=0)
    keys = np.concatenate([g[:200], ["Unknown"] * 3])
    p = np.concatenate([prob[:200], [0.49, 0.5, 0.51]])
    proba = tf.constant(np.stack([1 - p, p], 1), tf.float32)
    inputs = {"sex": tf.constant(keys.astype(object))}
    expected = postprocess.positive_probability(p.astype(np.float32), keys, fitted)
    np.testing.assert_allclose(post.positive_probability(inputs, proba).numpy(), expected, atol=1e-12)
    assert post(inputs, proba).numpy()[-3:].tolist() == [0, 1, 1]


def test_clp_swap_table_and_counterfactuals():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "he", "she", "likes", "gay", "straight", "muslim"]
    table, pairs, skipped = clp.swap_table(vocab, [["he", "she"], ["gay", "straight"], ["muslim", "jewish"]])
    assert ("he", "she") in pairs and ("she", "he") in pairs and "jewish" in skipped
    assert table[vocab.index("muslim")] == vocab.index("muslim")  # no partner in vocab: unchanged
    ids = tf.constant([[2, 5, 7, 3, 0], [2, 7, 7, 3, 0]])
    swapped, has = clp.counterfactual_ids(ids, table)
    assert swapped.numpy().tolist() == [[2, 6, 7, 3, 0], [2, 7, 7, 3, 0]]
    assert has.numpy().tolist() == [1.0, 0.0]
