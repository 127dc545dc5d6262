"""Fairness mitigations composed with DP-SGD and run end to end (the adversary stays inside clipping)."""
import numpy as np
import pytest
import tensorflow as tf

import tfresp
from tests.conftest import tiny_adult
from tfresp.errors import ConfigError


def _cfg(**fair):
    return tiny_adult(name="fair-comp", data={"source": "adult", "label": "income", "sensitive": ["sex", "race"],
                                              "max_rows": 1200},
                      fairness={"bootstrap": 0, **fair}, export={"saved_model": False}, report={"html": False})


def test_adversarial_with_dp_uses_vectorized_clipping_and_trains_adversary(tmp_path):
    from tfresp.privacy.clipping import clipped_sum_vectorized

    cfg = _cfg(mitigation="adversarial", constraint="equalized_odds")
    cfg["data"]["max_rows"] = 600
    cfg["privacy"] = {"noise_multiplier": 1.0, "audit": False}
    run = tfresp.fit(cfg, out=str(tmp_path / "adv_dp"), quiet=True)
    ctx = run.context
    priv = run.report["privacy"]
    assert priv["epsilon"] > 0 and priv["clipping"]["mode"] == "vectorized"
    assert "fair_adversary" in priv["clipping"]["reason"]
    holder = ctx.own("fairness").adversary
    core_vars = [v.ref() for v in ctx.core.trainable_variables]
    adv_pos = [core_vars.index(v.ref()) for v in holder.adversary.trainable_variables]
    # the clipped per-example gradient sum DP-SGD noises has non-zero adversary components
    n = 64
    extras = {"sample_weight": np.ones(n, np.float32), "fair_group": ctx.train_extras["fair_group"][:n]}
    grads = clipped_sum_vectorized(ctx.model, tf.constant(ctx.data.train.x[:n]), tf.constant(ctx.data.train.y[:n]),
                                   {k: tf.constant(v) for k, v in extras.items()}, 1.0)[0]
    assert all(grads[i] is not None and float(np.abs(np.asarray(grads[i])).sum()) > 0 for i in adv_pos)
    fair = run.report["fairness"]
    assert fair["mitigation"]["name"] == "adversarial" and fair["sex"]["equalized_odds_difference"] is not None
    assert "fair/eo_diff" in run.history


def test_mmd_refused_under_privacy_through_fit(tmp_path):
    cfg = _cfg(mitigation="mmd")
    cfg["privacy"] = {"target_epsilon": 3.0}
    with pytest.raises(ConfigError, match="cannot be clipped per example"):
        tfresp.fit(cfg, out=str(tmp_path / "mmd_dp"), quiet=True)
    assert not (tmp_path / "mmd_dp").exists()


@pytest.mark.slow
@pytest.mark.parametrize("mitigation", ["reweigh", "mmd", "adversarial"])
def test_training_mitigations_end_to_end(tmp_path, mitigation):
    run = tfresp.fit(_cfg(mitigation=mitigation), out=str(tmp_path / mitigation), quiet=True)
    fair = run.report["fairness"]
    assert fair["mitigation"]["name"] == mitigation
    assert fair["tradeoff"]["after"]["accuracy"] == pytest.approx(run.metrics["accuracy"])
    if mitigation == "reweigh":
        w = fair["mitigation"]["weights"]
        assert w["Female"][">50K"] > 1.0 > w["Male"][">50K"]  # under-represented positives weighed up


@pytest.mark.slow
def test_clp_on_text_end_to_end(tmp_path):
    from tests.conftest import TWEETS

    if not TWEETS.exists():
        pytest.skip("tweets not present")
    data = {"source": str(TWEETS), "text": "text", "label": "sentiment", "max_rows": 400, "max_length": 24,
            "tokenizer": {"vocab_size": 1500}, "split": {"test": 0.25, "validation": 0.0}}
    cfg = {"name": "clp", "data": data, "model": {"kind": "bert", "bert": {"hidden": 32, "layers": 1, "heads": 2}},
           "train": {"epochs": 1, "batch_size": 50}, "export": {"saved_model": False}, "report": {"html": False},
           "fairness": {"mitigation": "clp", "weight": 1.0, "bootstrap": 0,
                        "identity_terms": [["he", "she"], ["man", "woman"], ["i", "you"]]}}
    run = tfresp.fit(cfg, out=str(tmp_path / "clp"), quiet=True)
    mit = run.report["fairness"]["mitigation"]
    assert mit["name"] == "clp" and "i->you" in mit["swaps"] and "you->i" in mit["swaps"]
    cf = mit["counterfactual_test"]
    assert cf["rows_with_identity_terms"] > 0 and 0.0 <= cf["counterfactual_flip_rate"] <= 1.0
    assert cf["mean_abs_logit_change"] >= 0.0
