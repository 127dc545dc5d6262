"""Text robustness through ``fit`` (issue 15: the embedding split was read by robustness but written nowhere)."""
import numpy as np
import pytest

from tests.conftest import TWEETS
from tfresp.run.builder import build_and_run
from tfresp.config import load_config


def test_text_robustness_runs_through_fit_in_embedding_space(tmp_path):
    if not TWEETS.exists():
        pytest.skip("tweets not present")
    cfg = load_config({"name": "txtrob", "data": {"source": str(TWEETS), "text": "text", "label": "sentiment",
                                                  "max_rows": 200, "max_length": 24, "tokenizer": {"vocab_size": 200},
                                                  "split": {"test": 0.2, "validation": 0.0}},
                       "model": {"kind": "bert", "bert": {"hidden": 16, "layers": 1, "heads": 2}},
                       "train": {"epochs": 1, "batch_size": 32},
                       "robustness": {"train": "none", "eval_epsilons": [0.05, 0.5], "eval_examples": 24,
                                      "eval_steps": 5, "restarts": 1, "noise_samples": 2},
                       "export": {"saved_model": False}})
    run = build_and_run(cfg, out=tmp_path / "r", quiet=True)
    rob = run.report["robustness"]
    assert rob["space"] == "input embeddings" and rob["examples"] == 24
    # the split reproduces the model: clean accuracy in embedding space == the core's accuracy on the same rows
    x = {k: v[:24] for k, v in run.context.data.test.x.items()}
    acc = float(np.mean(run.model.predict(x, verbose=0).argmax(-1) == run.context.data.test.y[:24]))
    assert rob["clean_accuracy"] == pytest.approx(acc)
    # only the embedding channels are attacked (the attention-mask channel is frozen)
    assert rob["attackable_dims"] == 24 * 16
    for e in (0.05, 0.5):
        assert rob[f"pgd@{e:g}"]["accuracy"] <= rob["clean_accuracy"] + 1e-9
        assert rob[f"pgd@{e:g}"]["max_perturbation"] <= e + 1e-5
