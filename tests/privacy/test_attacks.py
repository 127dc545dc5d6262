"""A user's own Keras model attacking DP-SGD's per-example bound through the public doors (``make_private`` then
``model.fit``). Each case once produced a wrong clipped sum or a release outside the noise.

Oracle: a per-example Python loop (one GradientTape per example, each gradient clipped to C, summed).
"""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfresp.errors import IncompatibleModelError
from tfresp.privacy import clipping
from tfresp.privacy.private import make_private

C = 1.0
D = 5


def _oracle(model, x, y):
    variables = model.core.trainable_variables
    ref = [np.zeros(v.shape, np.float64) for v in variables]
    for i in range(int(y.shape[0])):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model.base_per_example_loss(y[i:i + 1], model.core(x[i:i + 1], training=True)))
        g = [tf.convert_to_tensor(t).numpy().astype(np.float64) for t in
             tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)]
        n = np.sqrt(sum((t ** 2).sum() for t in g))
        for a, t in zip(ref, g):
            a += t * min(1.0, C / max(n, 1e-12))
    return ref


def _diff_to_oracle(dp, rows=12):
    x = tf.constant(np.random.default_rng(1).normal(size=(rows, D)) * 3, tf.float32)
    y = tf.constant(np.arange(rows) % 3)
    got, *_ = clipping.clipped_sum(dp.clipping, dp.model, x, y, {"sample_weight": tf.ones(rows)}, C)
    ref = _oracle(dp.model, x, y)
    return max(float(np.max(np.abs(tf.convert_to_tensor(a).numpy() - b))) for a, b in zip(got, ref))


def _mlp(middle=None):
    keras.utils.set_random_seed(0)
    inp = keras.Input((D,))
    h = keras.layers.Dense(8, activation="tanh")(inp)
    if middle is not None:
        h = middle(h)
    return keras.Model(inp, keras.layers.Dense(3)(h))


def _private(core, batch_size=10):
    return make_private(core, num_examples=100, batch_size=batch_size, epochs=1, noise_multiplier=1.0)


# -- mixing layers the 4-row probe does not trigger ----------------------------------------------------------------
def test_mixing_only_above_the_probe_batch_size_is_refused():
    """Centres on the batch mean only when the batch has more than 6 rows: the 4-row probe never takes that branch,
    the run's batches (Poisson, ~10 rows) always do. Before the fix: ghost clipping, clipped sum off by ~0.1."""
    gated = keras.layers.Lambda(lambda t: tf.cond(tf.shape(t)[0] > 6, lambda: t - tf.reduce_mean(t, 0),
                                                  lambda: t), name="size_gated")
    with pytest.raises(IncompatibleModelError, match="mixes examples"):
        _private(_mlp(gated))


def test_mixing_that_only_one_row_feeds_is_refused():
    """Row 0 gets the last row added: changing the probe's example 1 moves nothing, every row must be tried."""
    class FirstGetsLast(keras.layers.Layer):
        def call(self, t):
            return tf.concat([t[:1] + t[-1:], t[1:]], 0)

    with pytest.raises(IncompatibleModelError, match="mixes examples"):
        _private(_mlp(FirstGetsLast()))


def test_a_size_gate_above_every_likely_batch_is_harmless_and_admitted():
    """The gate is measured at the run's largest likely batch size, not at an arbitrary one: mixing that no batch
    of this run can trigger (> 1000 rows out of 100) changes nothing and is not refused."""
    gated = keras.layers.Lambda(lambda t: tf.cond(tf.shape(t)[0] > 1000, lambda: t - tf.reduce_mean(t, 0),
                                                  lambda: t), name="size_gated")
    dp = _private(_mlp(gated))
    assert _diff_to_oracle(dp) < 1e-4


# -- the user's loss -----------------------------------------------------------------------------------------------
def _centred_logits_loss(y, p):
    """Shape [B], but each row's loss depends on the batch mean of the logits."""
    return keras.losses.sparse_categorical_crossentropy(y, p - tf.reduce_mean(p, 0), from_logits=True)


class _BatchSizeScaled(keras.losses.Loss):
    def call(self, y, p):
        loss = keras.losses.sparse_categorical_crossentropy(y, p, from_logits=True)
        return loss * tf.cast(tf.shape(loss)[0], loss.dtype) / 4.0


@pytest.mark.parametrize("loss", [_centred_logits_loss, _BatchSizeScaled()], ids=["centred", "size_scaled"])
def test_a_loss_that_mixes_examples_is_computed_one_example_at_a_time(loss):
    """Ghost clipping evaluated the compiled loss on the whole batch, so one example moved every other example's
    output gradient (clipped sum off by ~1 at C = 1). Now each example's loss sees its own row only, as in the
    vectorized path and the oracle."""
    dp = _private(_mlp())
    assert dp.clipping == "ghost"
    dp.model.compile("sgd", loss)
    assert _diff_to_oracle(dp) < 1e-4


@pytest.mark.parametrize("name", sorted(getattr(f, "__name__", "") for f in __import__(
    "tfresp.models.base", fromlist=["ROWWISE_LOSSES"]).ROWWISE_LOSSES))
def test_tf_keras_own_losses_are_measured_rowwise(name):
    """Ghost clipping evaluates tf_keras' own losses on the whole batch (no per-example map): each must give every
    row the value it gives that row alone (measured, for the classes and the functions)."""
    from tfresp.models.base import is_rowwise, per_example_loss_fn

    loss = getattr(keras.losses, name)
    fn = per_example_loss_fn(loss() if isinstance(loss, type) else loss)
    assert is_rowwise(fn)
    rng = np.random.default_rng(0)
    p = tf.constant(rng.uniform(0.1, 0.9, size=(6, 3)), tf.float32)
    y = tf.constant(np.arange(6) % 3) if "sparse" in name.lower() else tf.constant(
        rng.uniform(0.1, 0.9, size=(6, 3)), tf.float32)
    whole = fn(y, p).numpy()
    alone = np.concatenate([fn(y[i:i + 1], p[i:i + 1]).numpy() for i in range(6)])
    np.testing.assert_allclose(whole, alone, rtol=1e-6, atol=1e-7)


def test_a_subclass_of_a_keras_loss_that_mixes_is_not_taken_as_rowwise():
    """Identity, not isinstance: a subclass may override ``call`` (here: centred logits) and is computed one example
    at a time like any user loss."""
    from tfresp.models.base import is_rowwise

    class Centred(keras.losses.SparseCategoricalCrossentropy):
        def call(self, y, p):
            return super().call(y, p - tf.reduce_mean(p, 0))

    dp = _private(_mlp())
    dp.model.compile("sgd", Centred(from_logits=True))
    assert not is_rowwise(dp.model._loss_fn)
    assert _diff_to_oracle(dp) < 1e-4


def test_a_loss_reduced_over_the_batch_is_refused_with_a_message():
    def batch_mean(y, p):
        return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, p, from_logits=True))

    dp = _private(_mlp())
    dp.model.compile("sgd", batch_mean)
    with pytest.raises(IncompatibleModelError, match="`loss`: .*one value for the whole batch.*Remedy"):
        _diff_to_oracle(dp)


# -- losses added by layers ----------------------------------------------------------------------------------------
class _DataLoss(keras.layers.Layer):
    """``add_loss`` of a batch statistic of the activations (a batch-level, data-dependent term)."""

    def call(self, t):
        self.add_loss(tf.reduce_mean(tf.square(t)))
        return t


class _LazyDataLoss(keras.layers.Layer):
    """A callable loss closing over the last batch: evaluated inside the regulariser tape, after the noise."""

    def build(self, shape):
        self.seen = None
        self.add_loss(lambda: tf.reduce_mean(tf.square(self.seen)) if self.seen is not None else 0.0)

    def call(self, t):
        self.seen = t
        return t


@pytest.mark.parametrize("layer", [_DataLoss, _LazyDataLoss])
def test_a_data_dependent_add_loss_is_refused(layer):
    with pytest.raises(IncompatibleModelError, match="add_loss.*depends on the batch"):
        _private(_mlp(layer()))


def test_a_weight_regulariser_is_still_admitted():
    keras.utils.set_random_seed(0)
    core = keras.Sequential([keras.Input((D,)), keras.layers.Dense(8, kernel_regularizer="l2"), keras.layers.Dense(3)])
    dp = _private(core)
    assert _diff_to_oracle(dp) < 1e-4


# -- the model changed after admission ------------------------------------------------------------------------------
def _data(n=100):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, D)).astype("float32"), np.arange(n) % 3


def test_unfreezing_a_layer_after_make_private_is_refused_before_training():
    """A frozen BatchNormalization is admitted; unfrozen afterwards, it would update its moving statistics from
    the private rows (released with the model, outside the noise)."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((D,))
    bn = keras.layers.BatchNormalization()
    core = keras.Model(inp, keras.layers.Dense(3)(bn(keras.layers.Dense(8)(inp))))
    bn.trainable = False
    dp = _private(core)
    bn.trainable = True
    dp.model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = bn.moving_mean.numpy().copy()
    x, y = _data()
    with pytest.raises(IncompatibleModelError, match="`model`: .*trainable.*after make_private.*Remedy"):
        dp.model.fit(dp.dataset(x, y), epochs=1, verbose=0)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)


def test_freezing_a_layer_after_make_private_still_trains():
    keras.utils.set_random_seed(0)
    inp = keras.Input((D,))
    first = keras.layers.Dense(8)
    core = keras.Model(inp, keras.layers.Dense(3)(first(inp)))
    dp = _private(core)
    first.trainable = False
    dp.model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data()
    dp.model.fit(dp.dataset(x, y), epochs=1, verbose=0)
    assert dp.steps > 0


# -- releases of the rows outside the noise: prints, Python calls, summaries, tables, files ------------------------
_STASH = []


def _to_python(a):
    _STASH.append(a.numpy())
    return a


class _Printer(keras.layers.Layer):
    def call(self, t):
        tf.print("row", t[0])
        return t


class _PyFunc(keras.layers.Layer):
    def call(self, t):
        return tf.ensure_shape(tf.py_function(_to_python, [t], t.dtype), t.shape)


class _Summary(keras.layers.Layer):
    def call(self, t):
        tf.summary.histogram("activations", t, step=0)
        return t


class _TableStore(keras.layers.Layer):
    def build(self, shape):
        self.table = tf.lookup.experimental.MutableHashTable(tf.int64, tf.float32, default_value=0.0)

    def call(self, t):
        self.table.insert(tf.range(tf.shape(t)[0], dtype=tf.int64), t[:, 0])
        return t


class _FileWriter(keras.layers.Layer):
    def __init__(self, path, **kw):
        super().__init__(**kw)
        self.path = path

    def call(self, t):
        tf.io.write_file(self.path, tf.strings.as_string(t[0, 0]))
        return t


@pytest.mark.parametrize("layer, shown", [(_Printer, "PrintV2"), (_PyFunc, "PyFunc"), (_Summary, "Summary"),
                                          (_TableStore, "resource"), (_FileWriter, "WriteFile")],
                         ids=["print", "py_function", "summary", "hash_table", "file"])
def test_a_step_that_sends_the_rows_elsewhere_is_refused(layer, shown, tmp_path):
    """Each of these was admitted (ghost) and sent activations of private rows to stdout, Python, TensorBoard, a
    table saved with the model or a file: none of it clipped or noised."""
    _STASH.clear()
    made = layer(str(tmp_path / "leak.txt")) if layer is _FileWriter else layer()
    with pytest.raises(IncompatibleModelError, match=f"(?s){shown}.*remedy"):
        _private(_mlp(made))


def test_a_model_with_two_outputs_is_refused_before_training():
    """tfresp's per-example loss takes one output; a second head failed later inside the traced step."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((D,))
    h = keras.layers.Dense(8)(inp)
    core = keras.Model(inp, [keras.layers.Dense(3)(h), keras.layers.Dense(1)(h)])
    with pytest.raises(IncompatibleModelError, match="`model`: .*2 outputs.*remedy"):
        _private(core)


# -- the documented limit: a mixing no probe can trigger ------------------------------------------------------------
class _SwitchedCentering(keras.layers.Layer):
    """Centres on the batch mean once ``switch`` is set (a step counter reaching 10,000, in a real attack)."""

    def build(self, shape):
        self.switch = self.add_weight(name="switch", shape=(), initializer="zeros", trainable=False)

    def call(self, t):
        return t - self.switch * tf.reduce_mean(t, 0)


def test_limit_a_mixing_switched_on_after_admission_escapes_ghost_but_not_the_per_example_paths():
    """What measuring cannot catch (README, Privacy): the probes see no mixing while the switch is off. Ghost
    clipping runs the forward pass on the whole batch, so once it is on the clipped sum is wrong; the vectorized
    path computes each example's gradient on a batch of its own, so it still equals the oracle."""
    errors = {}
    for mode in ("auto", "vectorized"):
        layer = _SwitchedCentering()
        dp = make_private(_mlp(layer), num_examples=100, batch_size=10, epochs=1, noise_multiplier=1.0,
                          clipping_mode=mode)
        layer.switch.assign(1.0)
        errors[dp.clipping] = _diff_to_oracle(dp)
    assert errors["vectorized"] < 1e-4
    assert errors["ghost"] > 1e-2  # the limit is real: README says so; use clipping: vectorized for untrusted code


# -- the tfresp.fit door: the user's code must not see private rows before admission ---------------------------------
def test_tfresp_fit_calls_the_users_model_on_synthetic_rows_before_admission(tmp_path):
    """``tfresp.fit(model=...)`` checked the output shape and kind on 8 training rows, before DP admission: a model
    that prints (refused afterwards) had already printed 8 private rows. The check now gets zero rows; the
    admission probes their own 4 synthetic rows."""
    import tfresp

    seen = []

    class Recorder(keras.layers.Layer):
        def call(self, t):
            if tf.executing_eagerly():
                seen.append(t.numpy())
            tf.print("row", t[0])  # a graph op that sends values out: refused by admission
            return t

    def build(spec):
        inp = keras.Input(spec.shape)
        return keras.Model(inp, keras.layers.Dense(spec.num_classes)(Recorder()(inp)))

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3)).astype("float32") + 5.0
    y = (x[:, 0] > 5.0).astype("int64")
    with pytest.raises(IncompatibleModelError, match="PrintV2"):
        tfresp.fit({"train": {"epochs": 1, "batch_size": 32}, "privacy": {"target_epsilon": 3},
                    "data": {"categories": {"label": [0, 1]}}}, model=build, data=(x, y), out=tmp_path / "r",
                   quiet=True)
    assert seen, "the model was never called eagerly: the test checks nothing"
    assert all(len(batch) == 4 or not np.any(batch) for batch in seen), [b.shape for b in seen]


def test_a_data_dependent_add_loss_added_after_make_private_is_refused_at_fit():
    class Keeper(keras.layers.Layer):
        def call(self, t):
            self.seen = t
            return t

    keeper = Keeper()
    core = _mlp(keeper)
    dp = _private(core)
    core.add_loss(lambda: tf.reduce_mean(tf.square(keeper.seen)))
    dp.model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data()
    with pytest.raises(IncompatibleModelError, match="`model`: after make_private.*add_loss.*depends on the batch"):
        dp.model.fit(dp.dataset(x, y), epochs=1, verbose=0)
    assert dp.steps == 0
