"""LIME: determinism, agreement with plain `lime`, stability, bounded batched prediction, images, HTML."""
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tf_keras as keras
from lime.lime_tabular import LimeTabularExplainer
from lime.lime_text import LimeTextExplainer

from tfresp.explain.lime_explain import (TabularLime, explain_image, explain_text, grid_segments, highlight_html,
                                         jaccard, stability)
from tfresp.explain.predict import string_predictor, tabular_predictor


def _weights(exp):
    return {f["feature"]: f["weight"] for f in exp["features"]}


def test_text_same_seed_same_explanation(tweets, text_model):
    texts, _, classes = tweets
    predict = string_predictor(text_model, batch_size=128)
    a = explain_text(texts[1], predict, seed=3, num_samples=300, top_k=6, class_names=classes)
    b = explain_text(texts[1], predict, seed=3, num_samples=300, top_k=6, class_names=classes)
    c = explain_text(texts[1], predict, seed=4, num_samples=300, top_k=6, class_names=classes)
    assert a["all_weights"] == b["all_weights"]
    assert a["features"] == b["features"]
    assert a["all_weights"] != c["all_weights"]
    assert predict.traces == 1 and predict.max_rows_per_call <= 128


def test_text_matches_plain_lime(tweets, text_model):
    """Same seed, same predict semantics: tfresp's weights equal plain lime with model.predict."""
    texts, _, classes = tweets
    text = texts[7]
    ours = explain_text(text, string_predictor(text_model, batch_size=64), seed=11, num_samples=400,
                        class_names=classes)

    def naive(strings):  # what a user of plain lime writes
        return tf.nn.softmax(text_model.predict(np.array(strings, dtype=object), verbose=0)).numpy()

    plain = LimeTextExplainer(class_names=classes, random_state=11).explain_instance(
        text, naive, labels=(ours["label"],), num_features=10 ** 6, num_samples=400)
    ref = dict(plain.as_list(label=ours["label"]))
    assert set(ref) == set(ours["all_weights"])
    for word, w in ref.items():
        assert ours["all_weights"][word] == pytest.approx(w, rel=1e-4, abs=1e-6)


def test_tabular_matches_plain_lime(adult_model):
    """Raw-column LIME through the compiled preprocessor path == plain lime with a pandas decode path."""
    ctx = adult_model
    data = ctx.data
    classes = [str(c) for c in data.classes]
    lime = TabularLime(data.preprocessor, ctx.core, data.train.frame, class_names=classes, batch_size=256,
                       max_train=1000, seed=0)
    row = data.test.frame.iloc[[5]]
    ours = lime.explain(row, seed=5, num_samples=300, top_k=len(lime.columns))

    cols = lime.columns

    def naive(matrix):  # decode with pandas, encode with the run's preprocessor, Keras predict
        frame = pd.DataFrame({c["name"]: (matrix[:, j] if c["kind"] == "numeric" else
                                          [c["values"][int(v)] for v in matrix[:, j]]) for j, c in enumerate(cols)})
        return tf.nn.softmax(ctx.core.predict(data.preprocessor.transform_frame(frame), verbose=0)).numpy()

    cats = [j for j, c in enumerate(cols) if c["kind"] == "categorical"]
    plain = LimeTabularExplainer(lime.training, feature_names=lime.feature_names, categorical_features=cats,
                                 categorical_names={j: cols[j]["values"] for j in cats}, class_names=classes,
                                 discretize_continuous=True, random_state=5)
    exp = plain.explain_instance(lime.encode(row)[0], naive, labels=(ours["label"],), num_features=len(cols),
                                 num_samples=300)
    ref = {lime.feature_names[i]: w for i, w in exp.local_exp[ours["label"]]}
    assert set(ref) == set(ours["all_weights"])
    for name, w in ref.items():
        assert ours["all_weights"][name] == pytest.approx(w, rel=1e-4, abs=1e-6)
    # explanations speak raw columns: conditions such as "age > 37.00" / "sex=Male"
    assert all(f["condition"].split("=")[0].split(" ")[0] in lime.feature_names or "<" in f["condition"]
               for f in ours["features"])


def test_stability_jaccard(tweets, text_model):
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    texts, _, classes = tweets
    predict = string_predictor(text_model)
    run = lambda s: explain_text(texts[2], predict, seed=s, num_samples=300, class_names=classes)  # noqa: E731
    same = stability(run, [0, 0, 0], 5)
    assert same["jaccard_mean"] == 1.0
    diff = stability(run, range(5), 5)
    assert 0.0 <= diff["jaccard_min"] <= diff["jaccard_mean"] <= 1.0
    assert len(diff["seeds"]) == 5


def test_batched_predictor_bounded_5000(adult_model):
    """5000 LIME samples: fixed-size calls of one trace; results equal Keras predict."""
    ctx = adult_model
    x = np.repeat(ctx.data.test.x[:50], 100, axis=0)
    pred = tabular_predictor(ctx.core, x.shape[1], batch_size=512)
    out = pred(x)
    assert pred.calls == 10 and pred.max_rows_per_call == 512 and pred.traces == 1
    ref = tf.nn.softmax(ctx.core.predict(x, verbose=0)).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    lime = TabularLime(ctx.data.preprocessor, ctx.core, ctx.data.train.frame, batch_size=512, max_train=500)
    exp = lime.explain(ctx.data.test.frame.iloc[[0]], seed=0, num_samples=5000)
    assert exp["num_samples"] == 5000
    assert lime.predict.max_rows_per_call <= 512 and lime.predict.traces == 1


def test_image_lime_finds_the_informative_region():
    """A fixed model that only looks at the top-left quadrant: LIME's top segments lie there."""
    inp = keras.Input((16, 16, 1))
    crop = keras.layers.Cropping2D(((0, 8), (0, 8)))(inp)
    mean = keras.layers.GlobalAveragePooling2D()(crop)
    logits = keras.layers.Dense(2, kernel_initializer=keras.initializers.Constant([[-8.0, 8.0]]),
                                bias_initializer="zeros")(mean)
    model = keras.Model(inp, logits)
    from tfresp.explain.predict import BatchedPredictor, keras_proba_fn

    predict = BatchedPredictor(keras_proba_fn(model), tf.TensorSpec([None, 16, 16, 1], tf.float32), 128)
    image = np.random.default_rng(0).uniform(0.5, 1.0, (16, 16, 1)).astype(np.float32)
    segs = grid_segments(16, 16, 4)  # 16 cells of 4x4; cells 0, 1, 4, 5 form the top-left quadrant
    a = explain_image(image, predict, seed=0, num_samples=400, top_k=4, segments=segs, batch_size=128)
    b = explain_image(image, predict, seed=0, num_samples=400, top_k=4, segments=segs, batch_size=128)
    assert a["label"] == 1
    assert {f["feature"] for f in a["features"]} == {"segment_0", "segment_1", "segment_4", "segment_5"}
    assert a["all_weights"] == b["all_weights"]
    assert a["heatmap"].shape == (16, 16)
    assert predict.max_rows_per_call <= 128


def test_highlight_html_escapes():
    snippet = highlight_html('<script>alert("x")</script> good & bad', {"good": 0.5, "bad": -0.2, "script": 0.1})
    assert "<script>" not in snippet and "&lt;" in snippet and "&amp;" in snippet
    assert 'title="+0.5"' in snippet and "rgba(210,40,40" in snippet


def test_string_cache_across_seeds(tweets, text_model):
    """The cache returns exactly what the model gives and skips perturbations already predicted."""
    texts, _, classes = tweets
    text = "the flight was late"
    cached = string_predictor(text_model, batch_size=64, cache_size=10_000)
    plain = string_predictor(text_model, batch_size=64)
    for seed in range(5):
        a = explain_text(text, cached, seed=seed, num_samples=200, class_names=classes)
        b = explain_text(text, plain, seed=seed, num_samples=200, class_names=classes)
        assert a["all_weights"].keys() == b["all_weights"].keys()
        for word, w in b["all_weights"].items():  # batches differ, so float rounding may too
            assert a["all_weights"][word] == pytest.approx(w, rel=1e-4, abs=1e-7)
        again = explain_text(text, cached, seed=seed, num_samples=200, class_names=classes)
        assert again["all_weights"] == a["all_weights"]
    assert cached.rows <= 16 < plain.rows  # 4 words: at most 2**4 distinct perturbations
    tiny = string_predictor(text_model, batch_size=64, cache_size=3)
    np.testing.assert_allclose(tiny(["a", "b c", "d e f", "g", "a"]), plain(["a", "b c", "d e f", "g", "a"]),
                               rtol=1e-5, atol=1e-7)
