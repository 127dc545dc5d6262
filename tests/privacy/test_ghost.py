"""tfresp's own ghost norms: reused layers are exact (against the per-example loop); batch-mixing layers refused."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tests.privacy.test_clipping import batch, loop_reference, max_diff
from tfresp.errors import IncompatibleModelError
from tfresp.models.base import TfrespModel
from tfresp.privacy import clipping, ghost

C = 1.0


def reused_dense_core(calls=4, seed=0, activation="tanh", train_head=True):
    """One Dense layer applied ``calls`` times in a row (the issue-12 repro: norm 2.0 at C = 1 for 4 calls)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((5,))
    shared = keras.layers.Dense(5, activation=activation, name="shared")
    h = inp
    for _ in range(calls):
        h = shared(h)
    head = keras.layers.Dense(3, trainable=train_head)
    return keras.Model(inp, head(h))


def reused_mixed_core(seed=0):
    """Embedding, LayerNormalization and MultiHeadAttention (its EinsumDense sublayers) each called twice."""
    keras.utils.set_random_seed(seed)
    a, b = keras.Input((4,), dtype="int32"), keras.Input((3,), dtype="int32")
    emb = keras.layers.Embedding(20, 8)
    mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    norm = keras.layers.LayerNormalization()
    ea, eb = emb(a), emb(b)
    ha, hb = norm(ea + mha(ea, eb)), norm(eb + mha(eb, ea))
    pooled = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling1D()(h) for h in (ha, hb)])
    return keras.Model([a, b], keras.layers.Dense(2)(pooled))


def per_example_clipped_norms(model, x, y, ex):
    """Norm of each example's clipped gradient, from ghost clipping run on a batch of one."""
    out = []
    for i in range(int(y.shape[0])):
        xi = tf.nest.map_structure(lambda t: t[i:i + 1], x)
        g, *_ = clipping.clipped_sum_ghost(model, xi, y[i:i + 1], {k: v[i:i + 1] for k, v in ex.items()}, C)
        out.append(float(tf.linalg.global_norm([tf.convert_to_tensor(t) for t in g])))
    return np.array(out)


@pytest.mark.parametrize("calls,activation,train_head", [(2, "tanh", True), (4, "tanh", True), (4, None, False)])
def test_reused_dense_is_exact_against_per_example_loop(calls, activation, train_head):
    model = TfrespModel(reused_dense_core(calls, activation=activation, train_head=train_head))
    mode, reason = clipping.select_clipping(model)
    assert mode == "ghost", reason
    x, y, ex = batch()
    ex = {"sample_weight": ex["sample_weight"] * 40.0}  # large gradients: most examples are clipped
    ref, ref_norms = loop_reference(model, x, y, ex, C)
    assert (ref_norms > C).sum() >= 5
    got, _, _, norms = clipping.clipped_sum_ghost(model, x, y, ex, C)
    np.testing.assert_allclose(norms.numpy(), ref_norms, rtol=1e-5)
    assert max_diff(got, ref) < 1e-5
    clipped = per_example_clipped_norms(model, x, y, ex)
    assert clipped.max() <= C * (1 + 1e-5)
    np.testing.assert_allclose(clipped, np.minimum(ref_norms, C), rtol=1e-5)
    print(f"calls={calls}: max |ghost - loop| = {max_diff(got, ref):.2e}, max clipped norm = {clipped.max():.6f}")


def test_summing_per_call_norms_would_be_caught():
    """The old rule (one squared norm per call, summed) misses the cross terms: the test above has power."""
    model = TfrespModel(reused_dense_core(4, activation=None, train_head=False))
    x, y, ex = batch()
    ex = {"sample_weight": ex["sample_weight"] * 40.0}
    _, ref_norms = loop_reference(model, x, y, ex, C)
    leaves = ghost.trainable_leaves(model.core)
    with tf.GradientTape(persistent=True) as tape:
        with ghost.recording(leaves, tape) as records:
            logits = model.core(x, training=True)
        loss = tf.reduce_sum(model.base_per_example_loss(y, logits) * ex["sample_weight"])
    exact, per_call = 0.0, 0.0
    for layer in leaves:
        calls = [(a, z, tape.gradient(loss, z)) for a, z in records[id(layer)]]
        exact += ghost._RULES[type(layer)](layer, calls)[0]
        per_call += tf.add_n([ghost._RULES[type(layer)](layer, [c])[0] for c in calls])
    np.testing.assert_allclose(np.sqrt(exact.numpy()), ref_norms, rtol=1e-5)
    old = np.sqrt(per_call.numpy())
    assert np.max(np.abs(old - ref_norms) / ref_norms) > 0.05
    # clipping with the old norm lets an example's gradient exceed C
    worst = np.max(ref_norms * np.minimum(1.0, C / old))
    print(f"old per-call rule: clipped norm up to {worst:.3f} at C = {C}")
    assert worst > 1.05 * C


def test_reused_embedding_layernorm_attention_exact():
    model = TfrespModel(reused_mixed_core())
    assert clipping.select_clipping(model)[0] == "ghost"
    rng = np.random.default_rng(0)
    x = [tf.constant(rng.integers(0, 20, (5, 4)), tf.int32), tf.constant(rng.integers(0, 20, (5, 3)), tf.int32)]
    y = tf.constant(rng.integers(0, 2, 5))
    ex = {"sample_weight": tf.constant(rng.random(5) + 0.5, tf.float32)}
    ref, ref_norms = loop_reference(model, x, y, ex, 0.05)
    assert (ref_norms > 0.05).any()
    got, _, _, norms = clipping.clipped_sum_ghost(model, x, y, ex, 0.05)
    np.testing.assert_allclose(norms.numpy(), ref_norms, rtol=1e-5)
    assert max_diff(got, ref) < 1e-5


def test_calls_are_restored_after_ghost_pass():
    model = TfrespModel(reused_dense_core(2))
    x, y, ex = batch(n=3)
    clipping.clipped_sum_ghost(model, x, y, ex, C)
    assert all("call" not in l.__dict__ for l in model.core.layers)


class _Wrapper(keras.layers.Layer):
    """A custom layer that owns a Dense sublayer: ghost cannot know how it uses the sublayer's weights."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.inner = keras.layers.Dense(3)

    def call(self, x):
        return self.inner(x) + tf.reduce_sum(self.inner.kernel)


def test_inexact_cases_fall_back_to_vectorized_with_reason():
    inp = keras.Input((5,))
    custom = TfrespModel(keras.Model(inp, _Wrapper(name="wrap")(inp)))
    mode, reason = clipping.select_clipping(custom)
    assert mode == "vectorized" and "'wrap' (_Wrapper)" in reason
    with pytest.raises(IncompatibleModelError, match="`privacy.clipping`.*wrap.*Remedy"):
        clipping.select_clipping(custom, "ghost")


class _RunningMean(keras.layers.Layer):
    """Not a BatchNormalization, but its non-trainable state follows the data in training mode."""

    def build(self, shape):
        self.mean = self.add_weight("mean", shape[-1:], initializer="zeros", trainable=False)

    def call(self, x, training=None):
        if training:
            self.mean.assign(0.9 * self.mean + 0.1 * tf.reduce_mean(x, 0))
        return x - self.mean


def test_check_model_refuses_every_batch_mixing_layer_in_one_message():
    inp = keras.Input((4,))
    h = keras.layers.experimental.SyncBatchNormalization(name="sync_bn")(inp)
    h = _RunningMean(name="running")(h)
    core = keras.Model(inp, keras.layers.Dense(2)(keras.layers.BatchNormalization(name="bn")(h)))
    before = [v.numpy() for v in core.non_trainable_variables]
    with pytest.raises(IncompatibleModelError) as err:
        clipping.check_model(core)
    msg = str(err.value)
    assert msg.startswith("`model`:") and "remedy" in msg
    for name in ("'sync_bn' (SyncBatchNormalization)", "'bn' (BatchNormalization)", "'running' (_RunningMean)"):
        assert name in msg
    assert msg.count("'bn'") == 1  # the probe does not list BatchNormalization twice
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, core.non_trainable_variables))  # restored
    frozen = keras.layers.BatchNormalization()
    frozen.trainable = False
    clipping.check_model(keras.Model(inp, keras.layers.Dense(2)(frozen(inp))))  # no update in training mode


def test_tfresp_never_imports_tensorflow_privacy():
    """tensorflow-privacy pins Python < 3.12 and numpy 1: tfresp must not need it (issue 16)."""
    from pathlib import Path

    root = Path(clipping.__file__).resolve().parents[1]
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if "tensorflow_privacy" in p.read_text() or "skip_tf_privacy_import" in p.read_text()]
    assert offenders == []


@pytest.mark.parametrize("equation,out_shape,bias_axes", [
    ("abc,cde->abde", (4, 2, 3), "de"),    # MultiHeadAttention query/key/value projection
    ("abcd,cde->abe", (4, 5), "e"),        # MultiHeadAttention output projection (two contracted axes)
    ("...b,bc->...c", (5,), "c"),          # ellipsis
    ("abc,bcd->abd", (4, 5), "d"),         # an axis shared by input, kernel and output: direct per-example rule
])
def test_einsum_dense_equations_exact(equation, out_shape, bias_axes):
    keras.utils.set_random_seed(0)
    in_shape = {"abc,cde->abde": (4, 6), "abcd,cde->abe": (4, 2, 3), "...b,bc->...c": (4, 6),
                "abc,bcd->abd": (4, 6)}[equation]
    inp = keras.Input(in_shape)
    layer = keras.layers.EinsumDense(equation, out_shape, bias_axes=bias_axes, activation="tanh")
    h = layer(inp)
    h = keras.layers.Flatten()(h)
    model = TfrespModel(keras.Model(inp, keras.layers.Dense(2)(h)))
    assert clipping.select_clipping(model)[0] == "ghost"
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(5,) + in_shape), tf.float32)
    y = tf.constant(rng.integers(0, 2, 5))
    ex = {"sample_weight": tf.ones(5)}
    ref, ref_norms = loop_reference(model, x, y, ex, 0.5)
    got, _, _, norms = clipping.clipped_sum_ghost(model, x, y, ex, 0.5)
    np.testing.assert_allclose(norms.numpy(), ref_norms, rtol=1e-5)
    assert max_diff(got, ref) < 1e-5
