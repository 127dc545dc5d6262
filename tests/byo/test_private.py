"""make_private: DP-SGD in a plain model.fit on any keras.Model; exact clipping, honest books, refusals."""
import dp_accounting
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tfresp
from tfresp.privacy.private import make_private

C = 0.5


def _data(n=96, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32") * 3.0  # large inputs: most per-example norms exceed C
    return x, (x[:, 0] + x[:, 1] > 0).astype("int64")


def shared_layer_model():
    """A functional model that applies one Dense layer twice (its gradient sums two contributions)."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((5,))
    shared = keras.layers.Dense(5, activation="tanh", name="shared")
    h = shared(shared(inp))
    return keras.Model(inp, keras.layers.Dense(2, name="head")(h), name="reuse")


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__(name="sub")
        self.shared = keras.layers.Dense(5, activation="tanh")
        self.head = keras.layers.Dense(2)

    def call(self, x, training=False):
        return self.head(self.shared(self.shared(x)))


def loop_clipped_sum(core, x, y, w=None):
    """Reference: one GradientTape per example, clip to C, sum (obviously correct, slow)."""
    total = [np.zeros(v.shape, np.float32) for v in core.trainable_variables]
    norms = []
    for i in range(len(y)):
        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(y[i:i + 1], core(x[i:i + 1]), from_logits=True)[0]
            loss = loss * (w[i] if w is not None else 1.0)
        g = tape.gradient(loss, core.trainable_variables)
        norm = float(tf.linalg.global_norm(g))
        norms.append(norm)
        for t, gi in zip(total, g):
            t += gi.numpy() * min(1.0, C / norm)
    return total, np.array(norms)


@pytest.mark.parametrize("build,mode", [(shared_layer_model, "auto"), (shared_layer_model, "vectorized"),
                                        (lambda: Subclassed(), "auto")])
def test_clipping_is_exact_for_a_reused_layer(build, mode):
    x, y = _data(n=24)
    core = build()
    core(x[:1])
    w = np.linspace(0.5, 2.0, len(y)).astype("float32")
    private = make_private(core, num_examples=len(y), batch_size=len(y), epochs=1, l2_norm_clip=C,
                           noise_multiplier=1.0, clipping_mode=mode)
    private.model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # the clipped sum of the mode make_private chose, without noise (σ = 0 is refused by make_private itself)
    from tfresp.privacy import clipping

    noiseless = clipping.make_gradient_fn(private.clipping, C, 0.0, expected_batch_size=len(y))
    _, grads, _ = noiseless(private.model, tf.constant(x), tf.constant(y), {"sample_weight": tf.constant(w)})
    if build is shared_layer_model and mode == "auto":
        assert private.clipping == "ghost" and "repeated calls" in private.clipping_reason
    expected, norms = loop_clipped_sum(core, x, y, w)
    assert (norms > C).mean() > 0.5  # clipping is active, so a wrong norm would show
    for g, e in zip(grads, expected):  # the transform divides the clipped sum by the expected batch size
        np.testing.assert_allclose(g.numpy() * len(y), e, rtol=2e-4, atol=2e-5)


def test_plain_fit_spends_what_dp_accounting_says():
    x, y = _data()
    keras.utils.set_random_seed(0)
    core = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
    private = make_private(core, num_examples=len(y), batch_size=16, epochs=2, l2_norm_clip=1.0,
                           target_epsilon=2.0, delta=1e-3)
    private.model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"])
    hist = private.model.fit(private.dataset(x, y), epochs=2, callbacks=[private.ledger], verbose=0).history
    steps = private.ledger.accountant.steps
    assert steps == 2 * private.steps_per_epoch == 12
    oracle = dp_accounting.pld.PLDAccountant()
    oracle.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
        16 / len(y), dp_accounting.GaussianDpEvent(private.noise_multiplier)), steps))
    assert private.ledger.epsilon == pytest.approx(oracle.get_epsilon(1e-3), rel=0.02)
    assert private.ledger.epsilon <= 2.0 and hist["dp/epsilon"][-1] == private.ledger.epsilon


def test_batchnorm_is_refused_and_frozen_batchnorm_allowed():
    core = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4), keras.layers.BatchNormalization(name="bn"),
                             keras.layers.Dense(2)])
    with pytest.raises(tfresp.IncompatibleModelError, match="'bn'.*LayerNormalization"):
        make_private(core, num_examples=96, batch_size=16, epochs=1, noise_multiplier=1.0)
    core.get_layer("bn").trainable = False
    assert make_private(core, num_examples=96, batch_size=16, epochs=1, noise_multiplier=1.0).model.core is core


def test_refusals_name_what_dp_needs():
    x, y = _data()
    core = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    private = make_private(core, num_examples=len(y), batch_size=16, epochs=1, noise_multiplier=1.0)
    with pytest.raises(tfresp.DataError, match="random access.*Poisson"):
        private.dataset(tf.data.Dataset.from_tensor_slices((x, y)), None)
    with pytest.raises(tfresp.DataError, match="num_examples=96"):
        private.dataset(x[:50], y[:50])
    with pytest.raises(tfresp.IncompatibleModelError, match="batch-level"):
        make_private(tfresp.ResponsibleModel(core, terms=[tfresp.terms.MinDiff()]), num_examples=96, batch_size=16,
                     epochs=1, noise_multiplier=1.0)
    with pytest.raises(tfresp.ConfigError, match="noise_multiplier.*target_epsilon"):
        make_private(core, num_examples=96, batch_size=16, epochs=1)


def test_a_term_added_after_ghost_clipping_is_refused():
    x, y = _data()
    core = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    private = make_private(core, num_examples=len(y), batch_size=16, epochs=1, noise_multiplier=1.0)
    assert private.clipping == "ghost"
    private.model.add_term(lambda m, xb, yb, out, side, training: tf.reduce_sum(tf.square(out), -1))
    private.model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(tfresp.IncompatibleModelError, match="after make_private"):
        private.model.fit(private.dataset(x, y), epochs=1, callbacks=[private.ledger], verbose=0)


def test_terms_inside_clipping_in_plain_fit():
    """An input transform attached before make_private runs inside vectorized per-example clipping."""
    x, y = _data()
    core = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)])
    model = tfresp.ResponsibleModel(core, terms=[tfresp.terms.GaussianNoiseTraining(0.1)])
    private = make_private(model, num_examples=len(y), batch_size=16, epochs=1, noise_multiplier=1.0)
    assert private.clipping == "vectorized" and "input transform" in private.clipping_reason
    private.model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    private.model.fit(private.dataset(x, y), epochs=1, callbacks=[private.ledger], verbose=0)
    assert private.ledger.accountant.steps == private.steps_per_epoch


def test_fit_path_clips_a_reused_layer_exactly():
    """The tfresp.fit privacy concern's choice for a layer called twice (ghost: repeated calls are summed before
    the norm) gives the per-example loop's clipped sum."""
    from tfresp.privacy import clipping

    x, y = _data(n=24)
    core = shared_layer_model()
    model = tfresp.ResponsibleModel(core)
    mode, _ = clipping.select_clipping(model, "auto")
    assert mode == "ghost"
    summed, _, _, _ = clipping.clipped_sum_ghost(model, tf.constant(x), tf.constant(y), {}, C)
    expected, _ = loop_clipped_sum(core, x, y)
    assert max(float(np.abs(g.numpy() - e).max()) for g, e in zip(summed, expected)) < 1e-4
    private = make_private(core, num_examples=24, batch_size=8, epochs=1, noise_multiplier=1.0, clipping_mode="ghost")
    assert private.clipping == "ghost"
