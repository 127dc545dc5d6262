"""Fragility figures against a slow per-example Python-loop reference."""
import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfresp.robustness import sensitivity


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.layers.Dense(7, activation="tanh", input_shape=(5,)),
                             keras.layers.Dense(3)])


def _reference(model, x, mask=None):
    sums, norms = [], []
    for i in range(len(x)):
        xi = tf.constant(x[i:i + 1])
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(xi)
            logits = model(xi, training=False)
            m = logits[0, int(np.argmax(logits.numpy()[0]))]
        grads = tape.gradient(m, model.trainable_variables)
        sums.append(sum(float(tf.reduce_sum(g)) for g in grads))
        gx = tape.gradient(m, xi).numpy()[0]
        if mask is not None:
            gx = gx * mask
        norms.append(np.linalg.norm(gx))
    return float(np.mean(np.square(sums))), float(np.mean(norms))


def test_parameter_sensitivity_matches_loop_reference():
    model = _model()
    x = np.random.default_rng(0).normal(size=(23, 5)).astype(np.float32)
    d_ref, n_ref = _reference(model, x)
    assert np.isclose(sensitivity.parameter_sensitivity(model, x, batch_size=10), d_ref, rtol=1e-4)
    assert np.isclose(sensitivity.input_gradient_norm(model, x, batch_size=10), n_ref, rtol=1e-4)


def test_input_gradient_norm_respects_mask_and_scales():
    model = _model(1)
    x = np.random.default_rng(1).normal(size=(9, 5)).astype(np.float32)
    mask = np.array([1, 0, 1, 0, 0], np.float32)
    _, n_ref = _reference(model, x, mask)
    assert np.isclose(sensitivity.input_gradient_norm(model, x, mask[None]), n_ref, rtol=1e-4)
    # scaling the last layer by 3 scales every output gradient by 3 and D by 9
    d0 = sensitivity.parameter_sensitivity(model, x)
    w, b = model.layers[-1].get_weights()
    model.layers[-1].set_weights([3 * w, 3 * b])
    d1, _ = _reference(model, x)
    assert np.isclose(sensitivity.parameter_sensitivity(model, x), d1, rtol=1e-4)
    assert d1 != d0
