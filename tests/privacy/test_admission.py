"""Admission of a user's model under DP by measurement (issue 23): each case breaks the guarantee on purpose.

Oracle: a per-example Python loop (one GradientTape per example, clipped one by one).
"""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfresp.errors import IncompatibleModelError
from tfresp.models.base import TfrespModel
from tfresp.privacy import admission, clipping
from tfresp.privacy.private import make_private

C = 1.0


def _clipped_norms_ok(model, x, y, mode):
    """Each example's clipped gradient (the chosen mode run on a batch of one) has norm <= C, and the batch's
    clipped sum equals the per-example loop's."""
    extras = {"sample_weight": tf.ones(int(y.shape[0]))}
    per = []
    for i in range(int(y.shape[0])):
        xi = tf.nest.map_structure(lambda t: t[i:i + 1], x)
        g, *_ = clipping.clipped_sum(mode, model, xi, y[i:i + 1], {"sample_weight": tf.ones(1)}, C)
        per.append(float(tf.linalg.global_norm([tf.convert_to_tensor(t) for t in g])))
    got, *_ = clipping.clipped_sum(mode, model, x, y, extras, C)
    variables = model.core.trainable_variables
    ref = [np.zeros(v.shape, np.float64) for v in variables]
    norms = []
    for i in range(int(y.shape[0])):
        xi = tf.nest.map_structure(lambda t: t[i:i + 1], x)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model.base_per_example_loss(y[i:i + 1], model.core(xi, training=True)))
        g = [tf.convert_to_tensor(t).numpy().astype(np.float64) for t in
             tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)]
        n = np.sqrt(sum((t ** 2).sum() for t in g))
        norms.append(n)
        for a, t in zip(ref, g):
            a += t * min(1.0, C / n)
    assert (np.array(norms) > C).sum() >= 2, norms  # clipping is active, so a wrong norm would show
    assert max(per) <= C * (1 + 1e-5), per
    diff = max(float(np.max(np.abs(tf.convert_to_tensor(a).numpy() - b))) for a, b in zip(got, ref))
    assert diff < 1e-4, diff
    return max(per)


# -- 1. ghost exactness --------------------------------------------------------------------------------------------
def tied_lambda_core():
    """A Lambda multiplies by another layer's kernel (tf.matmul): ghost norms miss that use of the weight."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    enc = keras.layers.Dense(6, activation="tanh", name="enc")
    h = enc(inp)
    h = keras.layers.Lambda(lambda t: tf.matmul(t, enc.kernel, transpose_b=True), name="tied")(h)
    return keras.Model(inp, keras.layers.Dense(3, name="head")(h))


def tied_embedding_core():
    """Output logits from the embedding matrix (weight tying, as in language models), through a Lambda."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((5,), dtype="int32")
    emb = keras.layers.Embedding(7, 4, name="emb")
    h = keras.layers.GlobalAveragePooling1D()(emb(inp))
    h = keras.layers.Dense(4, activation="tanh")(h)
    tied = keras.layers.Lambda(lambda t: tf.matmul(t, emb.embeddings, transpose_b=True), name="tied_logits")
    return keras.Model(inp, tied(h))


@pytest.mark.parametrize("build,make_x,classes,scale", [
    (tied_lambda_core, lambda rng: rng.normal(size=(8, 6)).astype("float32") * 3, 3, 3.0),
    (tied_embedding_core, lambda rng: rng.integers(0, 7, (8, 5)).astype("int32"), 7, 20.0),
])
def test_tied_weights_fail_the_exactness_probe_and_clip_exactly(build, make_x, classes, scale):
    model = TfrespModel(build())
    mode, reason = clipping.select_clipping(model)
    assert mode == "vectorized", reason
    assert "uses weights outside the layer that owns them" in reason  # static: read from the traced graph
    # and the numeric probe alone also catches it: ghost norms differ from the per-example loop
    assert "differ from the per-example loop" in admission._exactness(model.core, admission.probe_batch(model.core))
    with pytest.raises(IncompatibleModelError, match="`privacy.clipping`.*outside the layer that owns them"):
        clipping.select_clipping(model, "ghost")
    rng = np.random.default_rng(1)
    x = tf.constant(make_x(rng))
    y = tf.constant(rng.integers(0, classes, 8))
    for v in model.core.trainable_variables:  # large weights: most examples are clipped
        v.assign(v * scale)
    assert _clipped_norms_ok(model, x, y, mode) <= C * (1 + 1e-5)


def test_weight_tying_gated_on_the_input_is_found_in_the_graph():
    """The tied use happens only for inputs no random probe draws: the norms agree on the probe, the graph does not."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    enc = keras.layers.Dense(6, activation="tanh", name="enc")
    h = enc(inp)

    def gated(t):
        return tf.cond(tf.reduce_max(t) > 100.0, lambda: tf.matmul(t, enc.kernel, transpose_b=True), lambda: t)

    model = TfrespModel(keras.Model(inp, keras.layers.Dense(3)(keras.layers.Lambda(gated, name="gate")(h))))
    assert admission._exactness(model.core, admission.probe_batch(model.core)) is None  # the random probe passes
    mode, reason = clipping.select_clipping(model)
    assert mode == "vectorized" and "'enc/kernel:0' of 'enc'" in reason, reason


def test_supported_models_still_get_ghost_after_the_probe():
    from tests.privacy.test_clipping import mlp_core, transformer_core

    for core in (mlp_core(), transformer_core()):
        mode, reason = clipping.select_clipping(TfrespModel(core))
        assert mode == "ghost" and "probe batch" in reason, reason


# -- 2. independence ----------------------------------------------------------------------------------------------
def batch_centering_core():
    """A stateless Lambda that subtracts the batch mean: one example moves every other example's loss."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((5,))
    h = keras.layers.Dense(6, activation="tanh")(inp)
    h = keras.layers.Lambda(lambda t: t - tf.reduce_mean(t, axis=0, keepdims=True), name="center")(h)
    return keras.Model(inp, keras.layers.Dense(2)(h))


def test_batch_mixing_stateless_layer_is_refused():
    core = batch_centering_core()
    with pytest.raises(IncompatibleModelError, match="changed the outputs of the other examples.*remedy"):
        clipping.check_model(core)
    with pytest.raises(IncompatibleModelError, match="mixes examples"):
        make_private(core, num_examples=100, batch_size=10, epochs=1, noise_multiplier=1.0)


def test_mixing_only_in_the_gradient_is_refused():
    """Forward pass per example (m - stop_gradient(m) = 0), but the gradient flows through the batch mean."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((5,))
    h = keras.layers.Dense(6, activation="tanh")(inp)

    def sneaky(t):
        m = tf.reduce_mean(t, axis=0, keepdims=True)
        return t + (m - tf.stop_gradient(m))

    core = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Lambda(sneaky)(h)))
    with pytest.raises(IncompatibleModelError, match="changed the gradient of the other examples"):
        clipping.check_model(core)


def test_dropout_model_passes_the_independence_probe_and_the_global_seed_is_restored():
    from tensorflow.python.eager import context
    from tensorflow.python.framework import config as tf_config

    keras.utils.set_random_seed(0)
    inp = keras.Input((5,))
    h = keras.layers.Dropout(0.5)(keras.layers.Dense(8, activation="relu")(inp))
    core = keras.Model(inp, keras.layers.Dense(2)(h))
    deterministic = tf_config.is_op_determinism_enabled()  # another test may have left it on
    saved = context.context()._seed
    try:
        tf_config.disable_op_determinism()
        context.context()._set_global_seed(None)  # an unseeded process (as a user's usually is)
        clipping.check_model(core)
        assert context.context()._seed is None  # the probe's fixed seed is not left behind
        assert not np.array_equal(tf.random.normal([4]).numpy(), tf.random.normal([4]).numpy())
    finally:
        context.context()._set_global_seed(saved)
        if deterministic:
            tf_config.enable_op_determinism()


# -- 3. written state ---------------------------------------------------------------------------------------------
class GatedMemory(keras.layers.Layer):
    """Stores the first row of the batch, but only for inputs outside the range a random probe draws."""

    def build(self, shape):
        self.memory = self.add_weight("memory", shape[-1:], initializer="zeros", trainable=False)

    def call(self, x, training=None):
        if training:
            if tf.reduce_max(x) > 100.0:
                self.memory.assign(x[0])
        return x + 0.0 * self.memory


class CounterGatedEMA(keras.layers.Layer):
    """An EMA of the inputs updated every 1000th call (an integer counter gates it)."""

    def build(self, shape):
        self.count = self.add_weight("count", (), dtype="int64", initializer="zeros", trainable=False)
        self.ema = self.add_weight("ema", shape[-1:], initializer="zeros", trainable=False)

    def call(self, x, training=None):
        if training:
            self.count.assign_add(1)
            if self.count % 1000 == 999:
                self.ema.assign(0.9 * self.ema + 0.1 * tf.reduce_mean(x, 0))
        return x


class MovingAverageCore(keras.Model):
    """A subclassed core that keeps a moving average of its inputs in a model-level variable."""

    def __init__(self):
        super().__init__(name="moving")
        self.hidden = keras.layers.Dense(6, activation="tanh")
        self.head = keras.layers.Dense(2)
        self.avg = tf.Variable(tf.zeros(5), trainable=False, name="avg")

    def call(self, x, training=False):
        if training:
            self.avg.assign(0.99 * self.avg + 0.01 * tf.reduce_mean(x, 0))
        return self.head(self.hidden(x))


def _functional_with(layer):
    keras.utils.set_random_seed(0)
    inp = keras.Input((5,))
    return keras.Model(inp, keras.layers.Dense(2)(layer(keras.layers.Dense(5)(inp))))


@pytest.mark.parametrize("build,shown", [
    (lambda: _functional_with(GatedMemory(name="gated")), "'gated' (GatedMemory) variable"),
    (lambda: _functional_with(CounterGatedEMA(name="ema_layer")), "'ema_layer' (CounterGatedEMA) variable"),
])
def test_gated_state_writes_are_read_from_the_traced_graph(build, shown):
    core = build()
    before = [v.numpy() for v in core.variables]
    with pytest.raises(IncompatibleModelError) as err:
        clipping.check_model(core)
    msg = str(err.value)
    assert shown in msg and "traced training step writes" in msg and "remedy" in msg
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, core.variables))  # the probe restores values


def test_subclassed_core_with_a_moving_average_is_refused():
    core = MovingAverageCore()
    core(np.zeros((1, 5), "float32"))
    with pytest.raises(IncompatibleModelError, match="'moving' \\(MovingAverageCore\\) variable 'avg"):
        make_private(core, num_examples=100, batch_size=10, epochs=1, noise_multiplier=1.0)


def test_gated_memory_would_leak_a_training_row():
    """Why probe 3 matters: trained without admission, the gated memory holds an exact training row."""
    core = _functional_with(GatedMemory(name="gated"))
    model = TfrespModel(core)
    model.gradient_fn = clipping.make_gradient_fn("vectorized", 1.0, 1.0, expected_batch_size=4.0)
    model.compile(keras.optimizers.SGD(0.0))
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    x[0] = 500.0  # an outlier row
    model.fit(x, np.zeros(4, "int64"), batch_size=4, epochs=1, verbose=0, shuffle=False)
    leaked = core.get_layer("gated").memory.numpy()
    assert np.abs(leaked).max() > 0  # the memory changed from the data


def test_a_term_that_stores_data_outside_the_model_is_refused():
    """A per-example term writing a variable captured from outside the model (traced with the model's loss)."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((5,))
    core = keras.Model(inp, keras.layers.Dense(2)(inp))
    store = tf.Variable(tf.zeros(5), trainable=False, name="side_store")

    def term(model, x, y, outputs, side, training):
        store.assign(x[0])
        return tf.zeros(tf.shape(outputs)[:1])

    model = TfrespModel(core, terms=[term])
    clipping.check_model(core)  # the core alone is clean
    with pytest.raises(IncompatibleModelError, match="resource captured from outside the model"):
        clipping.check_model(model)


def test_unbuilt_subclassed_core_is_refused_with_a_remedy():
    with pytest.raises(IncompatibleModelError, match="model\\(x\\[:1\\]\\)"):
        clipping.check_model(MovingAverageCore())


# -- 4. recurrent layers ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_recurrent_layers_train_with_per_example_clipping(kind):
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,), dtype="int32")
    h = getattr(keras.layers, kind)(5)(keras.layers.Embedding(20, 4)(inp))
    core = keras.Model(inp, keras.layers.Dense(2)(h))
    private = make_private(core, num_examples=16, batch_size=8, epochs=1, l2_norm_clip=C, noise_multiplier=0.5)
    assert private.clipping == "loop" and "tf.while_loop" in private.clipping_reason
    private.model.compile(keras.optimizers.SGD(0.1))
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 20, (16, 6)).astype("int32"), rng.integers(0, 2, 16)
    private.model.fit(private.dataset(x, y), epochs=1, verbose=0, callbacks=[private.ledger])
    for v in core.trainable_variables:
        v.assign(v * 4.0)
    _clipped_norms_ok(private.model, tf.constant(x[:6]), tf.constant(y[:6]), "loop")
