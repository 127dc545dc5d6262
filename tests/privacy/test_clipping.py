"""Per-example clipping against a slow Python-loop reference; ghost == vectorized; noise scale."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfresp.errors import IncompatibleModelError
from tfresp.models.base import ResponsibleModel
from tfresp.privacy import clipping

C = 1.0


def mlp_core(seed=0, dropout=False):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((5,))
    h = keras.layers.Dense(7, activation="tanh")(inp)
    if dropout:
        h = keras.layers.Dropout(0.5)(h)
    h = keras.layers.LayerNormalization()(h)
    return keras.Model(inp, keras.layers.Dense(3)(h))


def transformer_core(seed=0, vocab=50, length=6, dim=8):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((length,), dtype="int32")
    e = keras.layers.Embedding(vocab, dim)(inp)
    a = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(e, e)
    h = keras.layers.LayerNormalization()(e + a)
    h = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(inp, keras.layers.Dense(2)(keras.layers.Dense(8, activation="relu")(h)))


def batch(n=9, seed=1):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, 5)) * 3).astype("float32")
    y = rng.integers(0, 3, n)
    w = (rng.random(n) + 0.5).astype("float32")
    return tf.constant(x), tf.constant(y), {"sample_weight": tf.constant(w)}


def loop_reference(model, x, y, extras, clip):
    """Per-example gradients one at a time, clipped one by one, summed: the obviously-correct version."""
    variables = model.core.trainable_variables
    total = [np.zeros(v.shape, np.float64) for v in variables]
    norms = []
    for i in range(int(y.shape[0])):
        xi = tf.nest.map_structure(lambda t: t[i:i + 1], x)
        ei = {k: v[i:i + 1] for k, v in extras.items()}
        with tf.GradientTape() as tape:
            loss, _ = model.per_example_loss(xi, y[i:i + 1], ei, training=True)
            loss = tf.reduce_sum(loss)
        g = [tf.convert_to_tensor(t).numpy().astype(np.float64) for t in tape.gradient(loss, variables)]
        norm = np.sqrt(sum((t ** 2).sum() for t in g))
        norms.append(norm)
        for acc, t in zip(total, g):
            acc += t * min(1.0, clip / norm)
    return total, np.array(norms)


def max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(tf.convert_to_tensor(u)) - np.asarray(tf.convert_to_tensor(v)))))
               for u, v in zip(a, b))


def test_vectorized_equals_python_loop_reference():
    model = ResponsibleModel(mlp_core())
    x, y, ex = batch()
    ref, ref_norms = loop_reference(model, x, y, ex, C)
    assert (ref_norms > C).any() and (ref_norms < C).any()  # both clipped and unclipped examples
    got, losses, logits, norms = clipping.clipped_sum_vectorized(model, x, y, ex, C)
    assert max_diff(got, ref) < 1e-5
    np.testing.assert_allclose(norms.numpy(), ref_norms, rtol=1e-5)
    assert losses.shape == (9,) and logits.shape == (9, 3)


def test_ghost_equals_vectorized_and_reference():
    model = ResponsibleModel(mlp_core())
    x, y, ex = batch()
    ref, ref_norms = loop_reference(model, x, y, ex, C)
    ghost, _, _, gnorms = clipping.clipped_sum_ghost(model, x, y, ex, C)
    vec, _, _, _ = clipping.clipped_sum_vectorized(model, x, y, ex, C)
    np.testing.assert_allclose(gnorms.numpy(), ref_norms, rtol=1e-5)
    assert max_diff(ghost, ref) < 1e-5
    assert max_diff(ghost, vec) < 1e-5


def test_ghost_equals_vectorized_on_transformer():
    model = ResponsibleModel(transformer_core())
    assert clipping.select_clipping(model)[0] == "ghost"
    rng = np.random.default_rng(0)
    x = tf.constant(rng.integers(0, 50, (6, 6)), tf.int32)
    y = tf.constant(rng.integers(0, 2, 6))
    ex = {"sample_weight": tf.ones(6)}
    ref, _ = loop_reference(model, x, y, ex, 0.05)
    ghost, _, _, _ = clipping.clipped_sum_ghost(model, x, y, ex, 0.05)
    vec, _, _, _ = clipping.clipped_sum_vectorized(model, x, y, ex, 0.05)
    assert max_diff(vec, ref) < 1e-5
    assert max_diff(ghost, ref) < 1e-5


def test_extra_per_example_terms_are_inside_clipping():
    model = ResponsibleModel(mlp_core())
    model.per_example_losses.append(lambda m, x, y, logits, extras, training: 5.0 * tf.reduce_sum(logits ** 2, -1))
    mode, reason = clipping.select_clipping(model)
    assert mode == "vectorized" and "per-example loss term" in reason
    x, y, ex = batch()
    ref, norms = loop_reference(model, x, y, ex, C)
    got, _, _, _ = clipping.clipped_sum_vectorized(model, x, y, ex, C)
    assert max_diff(got, ref) < 1e-5
    # every example's contribution is bounded by C, so the sum is bounded by n*C
    assert np.sqrt(sum((g.numpy() ** 2).sum() for g in got)) <= 9 * C + 1e-4
    with pytest.raises(IncompatibleModelError, match="per-example loss"):
        clipping.select_clipping(model, "ghost")


@pytest.mark.parametrize("mode", ["ghost", "vectorized"])
def test_gradient_fn_without_noise_is_mean_over_expected_batch(mode):
    model = ResponsibleModel(mlp_core())
    x, y, ex = batch(n=7)
    ref, _ = loop_reference(model, x, y, ex, C)
    fn = clipping.make_gradient_fn(mode, C, 0.0, expected_batch_size=10.0)
    loss, grads, logits = fn(model, x, y, ex)
    assert max_diff(grads, [r / 10.0 for r in ref]) < 1e-6
    fixed = clipping.make_gradient_fn(mode, C, 0.0, expected_batch_size=None)
    _, grads2, _ = fixed(model, x, y, ex)
    assert max_diff(grads2, [r / 7.0 for r in ref]) < 1e-6
    per_ex, _ = model.per_example_loss(x, y, ex)
    assert abs(float(loss) - float(tf.reduce_mean(per_ex))) < 1e-6


@pytest.mark.parametrize("mode", ["ghost", "vectorized"])
def test_any_batch_size_including_empty(mode):
    model = ResponsibleModel(mlp_core())
    fn = clipping.make_gradient_fn(mode, C, 0.0, expected_batch_size=4.0)
    for n in (0, 1, 3, 13):
        x, y, ex = batch(n=n) if n else (tf.zeros((0, 5)), tf.zeros((0,), tf.int64), {"sample_weight": tf.zeros(0)})
        _, grads, _ = fn(model, x, y, ex)
        assert [g.shape for g in grads] == [v.shape for v in model.core.trainable_variables]
        if n == 0:
            assert max(float(tf.reduce_max(tf.abs(g))) for g in grads) == 0.0


def test_noise_std_is_sigma_c_over_expected_batch():
    tf.random.set_seed(3)
    model = ResponsibleModel(mlp_core())
    x, y, _ = batch(n=5)
    zero_w = {"sample_weight": tf.zeros(5)}  # zero loss -> the gradient is pure noise
    fn = tf.function(lambda *a: clipping.make_gradient_fn("vectorized", 2.0, 1.5, expected_batch_size=4.0)(
        model, *a)[1])
    samples = np.concatenate([np.concatenate([g.numpy().ravel() for g in fn(x, y, zero_w)]) for _ in range(40)])
    assert samples.size > 3000
    assert abs(samples.std() - 1.5 * 2.0 / 4.0) < 0.04 * 0.75
    assert abs(samples.mean()) < 0.03


def test_seeded_noise_is_philox_keyed_on_seed_and_step_eager_and_under_xla():
    """The seeded noise of step t is Philox ``stateless_normal((seed*1009, t))`` (oracle, eager); under XLA
    (jit_compile, where ``auto_select`` would be ThreeFry) it is still keyed on (seed, t): fresh every step,
    replayed only from the same counter value, different for another seed, std σC/denom."""
    model = ResponsibleModel(mlp_core())
    x, y, _ = batch(n=5)
    zero_w = {"sample_weight": tf.zeros(5)}  # zero loss -> the gradient is pure noise
    sizes = [int(np.prod(v.shape)) for v in model.core.trainable_variables]

    def noise_fn(seed_value, jit):
        seed = tf.Variable(seed_value, dtype=tf.int64)
        counter = tf.Variable(0, dtype=tf.int64)
        gfn = clipping.make_gradient_fn("ghost", 2.0, 1.5, expected_batch_size=4.0, seed=seed, counter=counter)
        fn = tf.function(lambda *a: tf.concat([tf.reshape(g, [-1]) for g in gfn(model, *a)[1]], 0),
                         jit_compile=jit)
        return fn, counter

    fn, counter = noise_fn(77, False)
    for step in range(2):
        oracle = tf.random.stateless_normal([sum(sizes)], seed=[77 * 1009, step], alg="philox") * 1.5 * 2.0 / 4.0
        np.testing.assert_allclose(fn(x, y, zero_w).numpy(), oracle.numpy(), rtol=1e-5, atol=1e-6)
    assert int(counter.numpy()) == 2
    fn, counter = noise_fn(77, True)
    draws = [fn(x, y, zero_w).numpy() for _ in range(30)]
    counter.assign(0)
    again = fn(x, y, zero_w).numpy()
    other = noise_fn(78, True)[0](x, y, zero_w).numpy()
    np.testing.assert_array_equal(again, draws[0])  # keyed on the counter: a resume draws the same noise
    assert not np.allclose(draws[0], draws[1]) and not np.allclose(draws[0], other)
    samples = np.concatenate(draws)
    assert abs(samples.std() - 1.5 * 2.0 / 4.0) < 0.04 * 0.75 and abs(samples.mean()) < 0.03


def test_selection_and_model_checks():
    assert clipping.select_clipping(ResponsibleModel(mlp_core()))[0] == "ghost"
    mode, reason = clipping.select_clipping(ResponsibleModel(mlp_core(dropout=True)))
    assert mode == "vectorized" and "stochastic" in reason
    inp = keras.Input((6, 2))
    conv = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Conv1D(3, 2)(inp))))
    mode, reason = clipping.select_clipping(ResponsibleModel(conv))
    assert mode == "vectorized" and "Conv1D" in reason
    assert clipping.select_clipping(ResponsibleModel(mlp_core()), "vectorized")[0] == "vectorized"
    inp = keras.Input((4,))
    bn = keras.Model(inp, keras.layers.Dense(2)(keras.layers.BatchNormalization(name="bn1")(inp)))
    with pytest.raises(IncompatibleModelError, match="bn1.*LayerNormalization"):
        clipping.check_model(bn)
    clipping.check_model(mlp_core())
