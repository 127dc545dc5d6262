"""End to end through tfresp.fit: MLM pretraining -> fine-tuning from that run with LoRA -> raw-string SavedModel."""
import json

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import TWEETS
from tfresp.run.builder import build_and_run
from tfresp.config import load_config
from tfresp.models import bert

DATA = {"source": str(TWEETS), "text": "text", "max_rows": 300, "max_length": 32,
        "split": {"test": 0.2, "validation": 0.1}}


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory):
    if not TWEETS.exists():
        pytest.skip("tweets not present")
    cfg = load_config({"name": "mlm", "task": "mlm", "data": {**DATA, "tokenizer": {"vocab_size": 400}},
                       "model": {"kind": "bert", "bert": {"hidden": 32, "layers": 1, "heads": 2}},
                       "train": {"epochs": 2, "batch_size": 32, "learning_rate": 2e-3}})
    return build_and_run(cfg, out=tmp_path_factory.mktemp("runs") / "mlm", quiet=True)


def test_mlm_run_reports_and_saves_a_checkpoint(mlm_run):
    ev = mlm_run.report["evaluation"]
    assert ev["test"]["perplexity"] == pytest.approx(np.exp(ev["test"]["mlm_loss"]), rel=1e-6)
    assert ev["test"]["perplexity"] < ev["mlm"]["uniform_perplexity"]  # learned something beyond uniform
    assert ev["mlm"]["loss_end"] < ev["mlm"]["loss_start"]
    assert (mlm_run.run_dir / ev["plots"]["mlm_loss"]).exists()
    assert (mlm_run.run_dir / "preprocessing" / "vocab.txt").exists()
    assert not (mlm_run.run_dir / "saved_model").exists()
    ck = bert.resolve_checkpoint(mlm_run.run_dir)
    assert ck["kind"] == "tfresp" and ck["config"].hidden_size == 32
    w = ck["weights"]()
    live = bert.named_weights(mlm_run.model)
    np.testing.assert_array_equal(w["encoder/layer_._0/attention/self/query/kernel"],
                                  live["encoder/layer_._0/attention/self/query/kernel"])


def test_finetune_from_mlm_run_with_lora_exports_merged_raw_string_model(mlm_run, tmp_path):
    cfg = load_config({"name": "ft", "data": {**DATA, "label": "sentiment"},
                       "model": {"kind": "checkpoint", "checkpoint": str(mlm_run.run_dir),
                                 "lora": {"rank": 4, "alpha": 8}},
                       "train": {"epochs": 1, "batch_size": 32, "learning_rate": 1e-3, "optimizer": "adamw",
                                 "warmup": 0.1, "weight_decay": 0.01, "clipnorm": 1.0}})
    run = build_and_run(cfg, out=tmp_path / "ft", quiet=True)
    m = run.report["model"]
    assert m["lora"]["merged_for_export"] and m["lora"]["merge_max_abs_logit_diff"] < 1e-5
    base = run.report["evaluation"]["baseline"]  # TF-IDF + logistic regression on the same splits, beside the model
    assert 0 < base["accuracy"] <= 1 and base["margin"] == pytest.approx(
        run.report["evaluation"]["test"]["accuracy"] - base["accuracy"])
    assert ("beats" in base["verdict"]) == (base["margin"] > 0)
    assert 0 < m["trainable_percent"] < 20
    assert m["loaded_weights"] > 0 and m["checkpoint_kind"] == "tfresp"
    # the base encoder starts from the MLM run's weights
    # raw strings in, same probabilities as the trained (unmerged) model
    loaded = tf.saved_model.load(str(run.run_dir / "saved_model"))
    shapes = tf.train.load_checkpoint(str(run.run_dir / "saved_model" / "variables" / "variables")
                                      ).get_variable_to_shape_map()
    weights = [s for k, s in shapes.items() if "VARIABLE_VALUE" in k and "optimizer" not in k.lower()]
    assert not any(4 in s for s in weights)  # no rank-4 LoRA factor survives the merge
    assert sum(int(np.prod(s)) for s in weights) == m["lora"]["exported_parameters"]
    texts = run.context.data.test.frame["text"].astype(str).tolist()[:16]
    served = loaded.signatures["serving_default"](text=tf.constant(texts))["probabilities"].numpy()
    direct = tf.nn.softmax(run.model.predict(run.context.data.test.x[:16], verbose=0)).numpy()
    np.testing.assert_allclose(served, direct, atol=1e-5)
    assert run.report["export"]["saved_model"]["roundtrip_max_abs_diff"] < 1e-5
    meta = json.loads((run.run_dir / "bert" / "bert_config.json").read_text())
    assert meta["task"] == "classification" and meta["classes"] == ["negative", "neutral", "positive"]


def test_checkpoint_kind_requires_a_path():
    from tfresp.errors import ConfigError

    cfg = load_config({"data": {**DATA, "label": "sentiment"}, "model": {"kind": "checkpoint",
                                                                          "checkpoint": "/nonexistent/dir"}})
    with pytest.raises(ConfigError, match="model.checkpoint"):
        build_and_run(cfg, out="/tmp/never-written", quiet=True)
