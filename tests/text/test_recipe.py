"""The text fine-tuning recipe (tfresp/tasks/recipe.py): selection by size, explicit keys win, LP-FT, layer-wise
learning rates, mean pooling, length-grouped batches. Tiny random BERTs, no checkpoint download."""
import types

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tf_keras as keras

from tfresp.config import load_config
from tfresp.data.text import SPECIAL_TOKENS, TextPreprocessor
from tfresp.models import bert
from tfresp.tasks import recipe

TINY = bert.BertConfig(vocab_size=64, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                       max_position=32, dropout=0.0, attention_dropout=0.0)


def _cfg(**over):
    base = {"data": {"source": "x.csv", "text": "text", "label": "y"},
            "model": {"kind": "checkpoint", "checkpoint": "/some/ckpt"}}
    for k, v in over.items():
        base[k] = {**base.get(k, {}), **v}
    return load_config(base)


def _ids(n, length, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, length + 1, n)
    ids = np.zeros((n, length), np.int32)
    mask = np.zeros((n, length), np.int32)
    for i, k in enumerate(lengths):
        ids[i, :k] = rng.integers(5, TINY.vocab_size, k)
        mask[i, :k] = 1
    return {"input_ids": ids, "attention_mask": mask}


def test_recipe_by_size_small_gets_more_epochs_and_larger_lr_than_large():
    small, medium, large = (recipe.choose(n, private=False) for n in (500, 2000, 20000))
    assert (small["size_class"], medium["size_class"], large["size_class"]) == ("small", "medium", "large")
    assert small["train.epochs"] > medium["train.epochs"] > large["train.epochs"]
    assert small["train.learning_rate"] > large["train.learning_rate"]
    assert small["model.pooling"] == "mean" and small["train.linear_probe"] is True
    assert 0 < small["train.layer_decay"] < 1
    lora = recipe.choose(500, private=False, lora=True)
    assert lora["train.learning_rate"] > small["train.learning_rate"] and lora["train.layer_decay"] == 1.0
    dp = recipe.choose(500, private=True)
    # nothing that reads private rows outside DP-SGD: no linear probe, no length percentile, no early stopping
    assert dp["train.linear_probe"] is False and "train.early_stopping" not in dp
    assert dp["model.dropout"] == 0.0 and not isinstance(dp["data.max_length"], int)


def test_length_cap_is_the_p99_rounded_up_to_8_and_never_above_the_configured():
    lengths = np.arange(1, 101)  # p99 = 99.01
    assert recipe.length_cap(lengths, 128) == 104
    assert recipe.length_cap(lengths, 64) == 64
    assert recipe.length_cap(np.full(50, 5), 64) == 16  # floor


def _text_data(n=40):
    vocab = SPECIAL_TOKENS + [f"w{i}" for i in range(30)]
    pre = TextPreprocessor(vocab, "text", 64)
    rng = np.random.default_rng(0)
    texts = [" ".join(f"w{j}" for j in rng.integers(0, 30, k)) for k in rng.integers(2, 12, n)]
    frame = pd.DataFrame({"text": texts, "y": rng.integers(0, 2, n)})
    split = _Split(frame=frame, x=pre.transform_frame(frame), y=frame.y.to_numpy())
    return types.SimpleNamespace(train=split, validation=None, test=None, preprocessor=pre,
                                 extra={"max_length": 64, "summary": {"text": {"max_length": 64}}})


class _Split(types.SimpleNamespace):
    def __len__(self):
        return len(self.y)


def test_apply_fills_only_unset_keys_and_reencodes_at_the_chosen_length():
    cfg = _cfg(train={"learning_rate": 3e-5, "epochs": 2})
    data = _text_data()
    info = recipe.apply(cfg, data)
    assert cfg.train.learning_rate == 3e-5 and cfg.train.epochs == 2  # explicit: kept
    assert info["explicit_in_config"] == {"train.learning_rate": 3e-5, "train.epochs": 2}
    expect = recipe.choose(len(data.train), private=False)
    assert cfg.train.batch_size == expect["train.batch_size"] and cfg.model.pooling == "mean"
    assert cfg.train.layer_decay == expect["train.layer_decay"] and cfg.train.linear_probe is True
    tokens = np.array([len(t.split()) + 2 for t in data.train.frame.text])  # one token per word + [CLS] [SEP]
    assert tokens.max() <= 16  # so the 16-token floor covers every row
    assert cfg.data.max_length == data.preprocessor.max_length == data.extra["max_length"] == 16
    assert data.train.x["input_ids"].shape[1] == 16
    np.testing.assert_array_equal(data.train.x["attention_mask"].sum(axis=1), tokens)  # nothing truncated
    # a RunConfig passed back through load_config keeps its unset keys unset (so the recipe still applies)
    again = load_config(_cfg(train={"epochs": 2}))
    assert again.train.model_fields_set == {"epochs"}
    off = _cfg(train={"recipe": "none"})
    assert recipe.apply(off, _text_data()) is None and off.model.pooling is None


def test_mean_pooling_matches_a_numpy_masked_mean_and_the_classifier_trains():
    h = np.random.default_rng(1).normal(size=(3, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], np.int32)
    want = np.stack([h[i, mask[i] == 1].mean(axis=0) for i in range(3)])
    np.testing.assert_allclose(bert.MeanPool()(h, mask).numpy(), want, rtol=1e-6)

    keras.utils.set_random_seed(0)
    core = bert.build_classifier(bert.dataclasses.replace(TINY, pooling="mean"), num_classes=2, max_length=16)
    names = [l.name for l in core.layers]
    assert "pooled" in names and "pooler" not in names
    x = _ids(64, 16)
    y = (x["input_ids"][:, 0] > 34).astype(np.int32)  # learnable from the first token
    core.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    hist = core.fit(x, y, epochs=8, batch_size=16, verbose=0).history["loss"]
    assert hist[-1] < 0.8 * hist[0]


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_layer_decay_gives_each_layer_its_own_learning_rate(opt):
    keras.utils.set_random_seed(0)
    core = bert.build_classifier(bert.dataclasses.replace(TINY, pooling="mean"), num_classes=3, max_length=16)
    decay, L, lr = 0.5, TINY.num_layers, 0.01
    mult = recipe.layer_multipliers(core, decay, L)
    assert mult["classifier"] == 1.0 and mult["embeddings_word"] == decay ** (L + 1)
    assert mult["layer_0_query"] == decay ** L and mult["layer_1_output"] == decay
    optimizer = keras.optimizers.SGD(lr) if opt == "sgd" else keras.optimizers.Adam(lr)
    recipe.apply_layer_lrs(optimizer, core, mult)
    probes = {"classifier": 1.0, "layer_1_query": decay, "layer_0_query": decay ** 2, "embeddings_ln": decay ** 3}
    before = {n: core.get_layer(n).weights[0].numpy().copy() for n in probes}
    grads = [tf.ones_like(v) for v in core.trainable_variables]
    optimizer.apply_gradients(zip(grads, core.trainable_variables))
    for name, m in probes.items():
        step = before[name] - core.get_layer(name).weights[0].numpy()
        # SGD: lr * grad; Adam's first step: lr * g / (|g| + eps) ~= lr. Independent of the wrapper's arithmetic.
        np.testing.assert_allclose(step, lr * m, rtol=1e-3, err_msg=name)


def test_linear_probe_sets_the_head_to_the_logistic_regression_on_frozen_features():
    from sklearn.linear_model import LogisticRegression

    keras.utils.set_random_seed(0)
    core = bert.build_classifier(bert.dataclasses.replace(TINY, pooling="mean"), num_classes=3, max_length=16)
    x, xv = _ids(90, 16, seed=2), _ids(30, 16, seed=3)
    y, yv = x["input_ids"][:, 0] % 3, xv["input_ids"][:, 0] % 3
    data = types.SimpleNamespace(train=types.SimpleNamespace(x=x, y=y), validation=types.SimpleNamespace(x=xv, y=yv))
    info = recipe.linear_probe(core, data, seed=0)
    feats = np.asarray(keras.Model(core.inputs, core.get_layer("pooled").output)(x))
    want = LogisticRegression(C=info["C"], max_iter=2000, random_state=0).fit(feats, y).predict(feats)
    got = np.argmax(core(x, training=False).numpy(), axis=1)
    assert np.mean(got == want) == 1.0
    assert info["C"] in (0.1, 1.0, 10.0) and 0 <= info["validation_accuracy"] <= 1


def test_grouped_batches_cover_every_row_once_and_pad_less():
    from tfresp.data.dataset import make_dataset

    x = _ids(256, 32, seed=4)
    y = np.arange(256)
    grouped = list(recipe.grouped_dataset(x, y, {}, batch_size=16, seed=0))
    assert sorted(np.concatenate([b[1].numpy() for b in grouped]).tolist()) == list(range(256))
    plain = list(make_dataset(x, y, {}, 16, shuffle=True, seed=0))
    width = lambda batches: np.mean([b[0]["input_ids"].shape[1] for b in batches])  # noqa: E731
    assert width(grouped) < width(plain)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A random tiny BERT saved as a tfresp checkpoint (vocab: special tokens + frequent tweet words)."""
    from collections import Counter

    from tests.conftest import TWEETS

    if not TWEETS.exists():
        pytest.skip("tweets not present")
    d = tmp_path_factory.mktemp("ck")
    words = Counter(w for t in pd.read_csv(TWEETS, nrows=2000, encoding_errors="replace").text.astype(str)
                    for w in t.lower().split() if w.isalpha())
    vocab = SPECIAL_TOKENS + [w for w, _ in words.most_common(300)]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    cfg = bert.dataclasses.replace(TINY, vocab_size=len(vocab), max_position=64)
    keras.utils.set_random_seed(0)
    core = bert.build_classifier(cfg, num_classes=3, max_length=64)
    return bert.save_checkpoint(core, cfg, d / "bert", d / "vocab.txt", True, 64)


@pytest.mark.slow  # ~60 s measured on a loaded 2-core machine
def test_auto_recipe_end_to_end_reports_the_recipe_and_the_baseline_line(tiny_checkpoint, tmp_path):
    from tests.conftest import TWEETS
    from tfresp.run.builder import build_and_run

    cfg = load_config({"name": "rc", "data": {"source": str(TWEETS), "text": "text", "label": "sentiment",
                                              "max_rows": 240, "split": {"test": 0.25, "validation": 0.2}},
                       "model": {"kind": "checkpoint", "checkpoint": str(tiny_checkpoint)},
                       "train": {"epochs": 1}, "export": {"saved_model": False}, "report": {"html": False}})
    run = build_and_run(cfg, out=tmp_path / "rc", quiet=True)
    rc = run.report["model"]["recipe"]
    assert rc["size_class"] == "small" and rc["explicit_in_config"] == {"train.epochs": 1}
    assert rc["chosen"]["model.pooling"] == "mean" and "C" in rc["linear_probe"]
    layers = {a["name"] for a in run.report["model"]["architecture"]}
    assert "pooled" in layers and "pooler" not in layers  # the model is built with the chosen pooling
    assert "mean pooling" in rc["linear_probe"]["features"]
    assert rc["layer_decay"]["decay"] == recipe.LAYER_DECAY
    saved = load_config(run.run_dir / "config.yaml")  # the resolved config reproduces the run
    assert saved.model.pooling == "mean" and saved.train.linear_probe is True
    assert saved.train.batch_size == rc["chosen"]["train.batch_size"]
    assert saved.data.max_length == rc["chosen"]["data.max_length"] <= 64
    md = (run.run_dir / "report.md").read_text()
    assert "Is the big model worth it?" in md and "Recipe `auto`" in md
    base = run.report["evaluation"]["baseline"]
    assert base["margin"] == pytest.approx(run.report["evaluation"]["test"]["accuracy"] - base["accuracy"])


def test_under_dp_the_recipe_reads_no_private_lengths_and_refuses_a_probe():
    from tfresp.errors import ConfigError

    cfg = _cfg(privacy={"target_epsilon": 8.0})
    data = _text_data()
    before = data.train.x["input_ids"].copy()
    info = recipe.apply(cfg, data)
    assert info["private"] and cfg.data.max_length == 64 and data.preprocessor.max_length == 64
    np.testing.assert_array_equal(data.train.x["input_ids"], before)  # not re-encoded
    assert cfg.train.linear_probe is False and cfg.train.early_stopping is None and cfg.model.dropout == 0.0
    cfg.train.linear_probe = True  # explicit: refused before anything is fitted
    ctx = types.SimpleNamespace(config=cfg, data=data, core=None)
    with pytest.raises(ConfigError, match="train.linear_probe"):
        recipe.RecipeRun().validate(ctx)  # before setup, where the probe would be fitted
