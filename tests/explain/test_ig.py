"""Integrated gradients: completeness with step doubling, agreement with a slow Python-loop reference."""
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfresp.data.preprocess import TabularPreprocessor
from tfresp.explain.ig import aggregate_columns, integrated_gradients, text_integrated_gradients


def _proba(core):
    return lambda x: tf.nn.softmax(core(x, training=False))


def _reference_ig(core, x, b, target, steps=2000):
    """Obviously-correct IG: a Python loop of midpoint-rule gradients, one point at a time."""
    total = np.zeros_like(x, dtype=np.float64)
    for k in range(steps):
        a = (k + 0.5) / steps
        pt = tf.constant((b + a * (x - b))[None], tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(pt)
            f = tf.nn.softmax(core(pt, training=False))[0, target]
        total += tape.gradient(f, pt).numpy()[0]
    return (x - b) * total / steps


def test_completeness_holds_and_steps_are_added(adult_model):
    data, core = adult_model.data, adult_model.core
    x = data.test.x[:40]
    base = data.train.x.mean(axis=0)
    res = integrated_gradients(_proba(core), x, base, steps=2, max_steps=1024, tolerance=0.05, batch_size=256)
    delta = res.f_x - res.f_baseline
    err = np.abs(res.attributions.sum(axis=1) - delta) / np.maximum(np.abs(delta), 1e-4)
    assert res.converged.all()
    assert np.all(err <= 0.05)
    np.testing.assert_allclose(err, res.completeness_error, rtol=1e-9, atol=1e-12)
    assert res.steps.max() > 2, "starting from 2 steps, some example must have needed more"
    assert set(np.unique(res.steps)) <= {2 ** k for k in range(1, 11)}
    # F(x) and F(baseline) are the model's probabilities of the explained (predicted) class
    proba = tf.nn.softmax(core(x)).numpy()
    np.testing.assert_allclose(res.f_x, proba[np.arange(len(x)), res.targets], rtol=1e-5)
    np.testing.assert_array_equal(res.targets, proba.argmax(axis=1))


def test_matches_python_loop_reference(adult_model):
    data, core = adult_model.data, adult_model.core
    base = data.train.x.mean(axis=0)
    x = data.test.x[:2]
    res = integrated_gradients(_proba(core), x, base, steps=256, max_steps=256, tolerance=0.01)
    for i in range(len(x)):
        ref = _reference_ig(core, x[i].astype(np.float64), base.astype(np.float64), int(res.targets[i]), steps=500)
        scale = max(np.abs(ref).max(), 1e-6)
        np.testing.assert_allclose(res.attributions[i], ref, atol=0.02 * scale)


def test_aggregate_columns_sums_one_hot_dims():
    df = pd.DataFrame({"age": [20.0, 30.0, 40.0], "sex": ["F", "M", "F"], "job": ["a", "b", "c"]})
    pre = TabularPreprocessor.fit(df, ["age", "sex", "job"])
    attr = np.arange(12, dtype=float).reshape(2, 6)  # dims: age | sex=F sex=M | job=a job=b job=c
    names, cols = aggregate_columns(attr, pre)
    assert names == ["age", "sex", "job"]
    np.testing.assert_allclose(cols, [[0, 1 + 2, 3 + 4 + 5], [6, 7 + 8, 9 + 10 + 11]])
    np.testing.assert_allclose(cols.sum(axis=1), attr.sum(axis=1))
    with pytest.raises(ValueError):
        aggregate_columns(attr[:, :5], pre)


def test_text_embedding_ig_completeness(tweets, text_model):
    texts, _, _ = tweets
    res = text_integrated_gradients(text_model, texts[:3], steps=2, max_steps=512, tolerance=0.05)
    for r, text in zip(res, texts[:3]):
        delta = r["f_x"] - r["f_baseline"]
        total = sum(r["attributions"]) + r["padding_attribution"]
        assert r["converged"]
        assert abs(total - delta) <= 0.05 * max(abs(delta), 1e-4)
        assert 0 < len(r["tokens"]) <= 40
        assert r["tokens"][0] in text.lower()
        p = tf.nn.softmax(text_model(tf.constant([text]))).numpy()[0]
        assert r["f_x"] == pytest.approx(float(p[r["target"]]), rel=1e-5)
    # the hook is gone afterwards: the model predicts as before
    emb = text_model.get_layer("embedding")
    assert "call" not in vars(emb)
