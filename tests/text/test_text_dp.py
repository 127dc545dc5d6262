"""DP-SGD through tfresp.fit on the functional BERT: ghost clipping covers every trainable layer."""
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import TWEETS
from tfresp.run.builder import build_and_run
from tfresp.config import load_config

DATA = {"source": str(TWEETS), "text": "text", "label": "sentiment", "max_rows": 300, "max_length": 24,
        "tokenizer": {"vocab_size": 300}, "split": {"test": 0.2, "validation": 0.0}}


@pytest.fixture(autouse=True)
def need_tweets():
    if not TWEETS.exists():
        pytest.skip("tweets not present")


def test_dp_finetune_uses_ghost_clipping_on_bert(tmp_path):
    cfg = load_config({"name": "dp", "data": DATA,
                       "model": {"kind": "bert", "bert": {"hidden": 32, "layers": 1, "heads": 2}},
                       "train": {"epochs": 1, "batch_size": 60, "learning_rate": 1e-3},
                       "privacy": {"noise_multiplier": 1.0, "audit": False}, "export": {"saved_model": False}})
    run = build_and_run(cfg, out=tmp_path / "dp", quiet=True)
    p = run.report["privacy"]
    assert 0 < p["epsilon"] < float("inf") and p["noise_multiplier"] == 1.0
    assert run.context.own("privacy").clipping_mode == "ghost", run.context.own("privacy").clipping_reason
    support = run.report["model"]["dp_layer_support"]
    assert support["registry_unsupported"] == [] and "Embedding" in support["registry_supported"]
    assert np.isfinite(run.report["evaluation"]["test"]["accuracy"])
    assert "not computed under DP" in run.report["evaluation"]["baseline"]["skipped"]


def test_ghost_norms_equal_per_example_loop_on_bert():
    """Ghost-clipped sum == sum of per-example clipped gradients computed one example at a time."""
    from tfresp.models import bert
    from tfresp.models.base import ResponsibleModel
    from tfresp.privacy import clipping

    cfg = bert.BertConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                          max_position=16, dropout=0.0, attention_dropout=0.0)
    model = ResponsibleModel(bert.build_classifier(cfg, 3))
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 50, size=(4, 10)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    x = {"input_ids": tf.constant(ids), "attention_mask": tf.constant(mask)}
    y = tf.constant([0, 1, 2, 1])
    extras = {"sample_weight": tf.ones(4)}
    ghost, *_ = clipping.clipped_sum_ghost(model, x, y, extras, 0.01)
    variables = model.core.trainable_variables
    ref = [np.zeros(v.shape, np.float64) for v in variables]
    for i in range(4):
        xi = {k: v[i:i + 1] for k, v in x.items()}
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model.per_example_loss(xi, y[i:i + 1], {"sample_weight": tf.ones(1)})[0])
        g = [tf.convert_to_tensor(t).numpy() for t in tape.gradient(loss, variables)]
        norm = np.sqrt(sum(float(np.sum(t.astype(np.float64) ** 2)) for t in g))
        for r, t in zip(ref, g):
            r += t * min(1.0, 0.01 / norm)
    for a, b in zip(ghost, ref):
        np.testing.assert_allclose(tf.convert_to_tensor(a).numpy(), b, atol=2e-6)


@pytest.mark.slow  # vectorized per-example clipping of the MLM loss: ~1-3 min on 2 CPU cores
def test_dp_mlm_pretraining_runs_with_per_example_clipping(tmp_path):
    cfg = load_config({"name": "dpmlm", "task": "mlm",
                       "data": {**DATA, "label": None, "max_rows": 120, "max_length": 16,
                                "tokenizer": {"vocab_size": 200}},
                       "model": {"kind": "bert", "bert": {"hidden": 16, "layers": 1, "heads": 2}},
                       "train": {"epochs": 1, "batch_size": 40, "learning_rate": 1e-3},
                       "privacy": {"noise_multiplier": 1.0}})
    run = build_and_run(cfg, out=tmp_path / "dpmlm", quiet=True)
    st = run.context.own("privacy")
    assert st.clipping_mode == "vectorized" and "input transform" in st.clipping_reason
    assert run.report["privacy"]["epsilon"] > 0
    assert np.isfinite(run.report["evaluation"]["test"]["mlm_loss"])
