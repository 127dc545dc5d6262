"""BERT students: layer copy, distillation loss, tfresp.fit with compression.distill, the DP rule."""
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tf_keras as keras

import tfresp
from tests.conftest import TWEETS
from tfresp.compression.distiller import Distiller
from tfresp.models import bert

TINY = bert.BertConfig(vocab_size=60, hidden_size=32, num_layers=4, num_heads=2, intermediate_size=64,
                       max_position=16, dropout=0.0, attention_dropout=0.0)


def _inputs(n=5, length=12, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, TINY.vocab_size, size=(n, length)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    return {"input_ids": tf.constant(ids), "attention_mask": tf.constant(mask)}


def _teacher():
    keras.utils.set_random_seed(1)
    return bert.build_classifier(TINY, 3, 16, name="teacher")


def test_spread_layers_is_distilberts_rule():
    # DistilBERT's extract_distilbert.py copies BERT-base layers [0, 2, 4, 7, 9, 11] into its 6-layer student
    assert bert.spread_layers(12, 6) == [0, 2, 4, 7, 9, 11]
    assert bert.spread_layers(6, 2) == [0, 5]
    assert bert.spread_layers(4, 2) == [0, 3]
    with pytest.raises(ValueError):
        bert.spread_layers(2, 3)


def test_student_copies_the_chosen_teacher_layers_exactly():
    teacher = _teacher()
    student = bert.build_student(teacher, TINY, 3, [0, 3], 16)
    assert sum(1 for l in student.layers if l.name.endswith("_query")) == 2
    t = {l.name: l for l in teacher.layers}
    copied = 0
    for layer in student.layers:
        if not layer.weights:
            continue
        name = layer.name
        if name.startswith("layer_1_"):
            name = "layer_3_" + name[len("layer_1_"):]
        for a, b in zip(layer.get_weights(), t[name].get_weights()):
            np.testing.assert_array_equal(a, b)
            copied += 1
    assert copied == len(student.weights)
    # a student keeping every layer in order is the teacher itself (same logits)
    same = bert.build_student(teacher, TINY, 3, [0, 1, 2, 3], 16)
    x = _inputs()
    np.testing.assert_allclose(same(x).numpy(), teacher(x).numpy(), atol=1e-6)
    assert np.max(np.abs(student(x).numpy() - teacher(x).numpy())) > 1e-5  # dropping layers changes logits
    with pytest.raises(tfresp.ConfigError):
        bert.build_student(teacher, TINY, 3, [0, 4], 16)


def _numpy_loss(t, s, y, temperature, alpha):
    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    p, q = softmax(t / temperature), softmax(s / temperature)
    kd = temperature ** 2 * np.sum(p * (np.log(p) - np.log(q)), axis=1)
    ce = -np.log(softmax(s)[np.arange(len(y)), y])
    return kd, alpha * ce.mean() + (1 - alpha) * kd.mean()


def test_distillation_loss_matches_numpy_oracle():
    teacher = _teacher()
    student = bert.build_student(teacher, TINY, 3, [1, 2], 16)
    x = _inputs(6, seed=3)
    y = np.array([0, 1, 2, 2, 1, 0])
    rng = np.random.default_rng(0)
    for model in (teacher, student):  # logits of a few units, so the KL term is far from zero
        head = model.get_layer("classifier")
        head.set_weights([rng.normal(0, 1.0, w.shape).astype(np.float32) for w in head.get_weights()])
    d = Distiller(teacher, student, temperature=3.0, alpha=0.3)
    d.compile(optimizer=keras.optimizers.SGD(0.0))
    t, s = teacher(x).numpy().astype(np.float64), student(x).numpy().astype(np.float64)
    kd, total = _numpy_loss(t, s, y, 3.0, 0.3)
    assert kd.min() > 1e-3
    np.testing.assert_allclose(d.distillation_loss(tf.constant(t), tf.constant(s)).numpy(), kd, rtol=1e-6)
    logs = d.train_step((x, tf.constant(y)))
    assert float(logs["loss"]) == pytest.approx(total, rel=1e-5)
    assert float(logs["distill_loss"]) == pytest.approx(kd.mean(), rel=1e-5)


# -- through tfresp.fit ------------------------------------------------------------------------------
DATA = {"source": str(TWEETS), "text": "text", "label": "sentiment", "max_rows": 240, "max_length": 24,
        "tokenizer": {"vocab_size": 300}, "split": {"test": 0.25, "validation": 0.0}}
MODEL = {"kind": "bert", "bert": {"hidden": 32, "layers": 4, "heads": 2}}
FAST = {"latency_runs": 60, "representative_rows": 20}


def _cfg(**over):
    cfg = {"name": "distill", "data": DATA, "model": MODEL, "train": {"epochs": 1, "batch_size": 40,
                                                                      "learning_rate": 1e-3},
           "export": {"saved_model": False}, "report": {"html": False}}
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module", autouse=True)
def need_tweets():
    if not TWEETS.exists():
        pytest.skip("tweets not present")


@pytest.fixture(scope="module")
def public_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("public") / "public.csv"
    df = pd.read_csv(TWEETS, encoding_errors="replace").iloc[-90:]
    df[["text"]].to_csv(path, index=False)
    return path


def test_dp_refuses_private_distillation_before_training(tmp_path):
    cfg = _cfg(privacy={"noise_multiplier": 1.0, "audit": False},
               compression={"distill": {"layers": 2, "alpha": 0.5, "teacher_layers": [1, 1], "hidden": [8]},
                            **FAST})
    with pytest.raises(tfresp.ConfigError) as err:
        tfresp.fit(cfg, out=tmp_path / "dp", quiet=True)
    assert {p[0] for p in err.value.problems} == {"compression.distill.data", "compression.distill.teacher_layers",
                                                  "compression.distill.hidden"}
    assert "own DP-SGD budget" in str(err.value) and "public" in str(err.value)
    assert not (tmp_path / "dp").exists()


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory, public_csv):
    seen = []
    fit = Distiller.fit

    def spy(self, ds, *a, **k):  # what the student is trained on: every element, kept
        for batch in ds:
            seen.append(batch)
        return fit(self, ds, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Distiller, "fit", spy)
        cfg = _cfg(privacy={"noise_multiplier": 1.0, "audit": False},
                   compression={"distill": {"layers": 2, "alpha": 0.0, "data": str(public_csv)}, **FAST})
        r = tfresp.fit(cfg, out=tmp_path_factory.mktemp("dp") / "dp", quiet=True)
    return r, seen


def test_dp_student_trains_on_public_text_only_and_is_in_the_budget(dp_run):
    r, seen = dp_run
    # no labels and exactly the 90 public rows (a version distilling on the 180 private rows fails here)
    assert seen and all(isinstance(b, dict) and set(b) == {"input_ids", "attention_mask"} for b in seen)
    assert sum(int(b["input_ids"].shape[0]) for b in seen) == 90
    s = r.report["compression"]["student"]
    assert "public.csv" in s["data"] and "alpha=0" in s["data"]
    budget = r.report["privacy"]["budget"]
    entries = [c for c in budget["coverage"] if c["item"] == "compression.student"]
    assert len(entries) == 1 and entries[0]["status"] == "dp" and "public.csv" in entries[0]["detail"]
    # the student spent nothing of its own
    assert not any("compression" in sp["source"] or "student" in sp["source"] for sp in budget["spends"])


def _check_student_section(r, s):
    """A 2-layer BERT student from teacher layers [0, 3], smaller than the teacher, both timed."""
    assert s["kind"] == "bert" and s["layers"] == 2 and s["teacher_layers"] == [0, 3]
    assert s["parameters"] < s["teacher"]["parameters"] and s["weights_bytes"] < s["teacher"]["weights_bytes"]
    assert s["teacher"]["accuracy"] == pytest.approx(r.report["evaluation"]["test"]["accuracy"])
    lat = s["latency"]
    for m in ("teacher", "student"):
        assert lat[m]["batch_1_ms"] > 0 and lat[m]["batch_32_ms"] > 0


def test_student_section_compares_teacher_and_student(dp_run):
    r, _ = dp_run
    s = r.report["compression"]["student"]
    _check_student_section(r, s)
    assert "not exported" in s["served"] and not (r.run_dir / "saved_model_student").exists()
    assert "float" not in r.report["compression"]  # distillation only: the teacher is not converted to TFLite


@pytest.mark.slow  # ~1-2 min on 2 busy cores: fit, distillation on the private rows, SavedModel export
def test_fit_distills_on_train_rows_and_exports_the_student(tmp_path):
    r = tfresp.fit(_cfg(compression={"distill": {"layers": 2, "temperature": 2.0, "export": True}, **FAST}),
                   out=tmp_path / "run", quiet=True)
    s = r.report["compression"]["student"]
    _check_student_section(r, s)
    assert "teacher" in s["served"] and "saved_model_student" in s["served"] and s["data"].startswith("train")
    assert s["saved_model"]["roundtrip_max_abs_diff"] < 1e-4
    # the exported student, scored from raw strings, is the accuracy the report states
    loaded = tf.saved_model.load(str(r.run_dir / "saved_model_student"))
    test = r.context.data.test
    out = loaded.signatures["serving_default"](text=tf.constant(test.frame["text"].fillna("").astype(str).tolist()))
    assert s["accuracy"] == pytest.approx(np.mean(out["class_id"].numpy() == test.y))


