"""Compression of the functional BERT tweet classifier (slow: run with -m slow)."""
import pytest

import tfresp
from tests.conftest import TWEETS
from tfresp.export import tflite


@pytest.mark.slow
def test_bert_pruned_and_exported_to_tflite(tmp_path):
    if not TWEETS.exists():
        pytest.skip("tweets not present")
    cfg = {"name": "txt", "data": {"source": str(TWEETS), "text": "text", "label": "sentiment", "max_rows": 400,
                                   "max_length": 32, "split": {"test": 0.2, "validation": 0.1}},
           "model": {"kind": "bert", "bert": {"hidden": 32, "layers": 1, "heads": 2}},
           "train": {"epochs": 1, "batch_size": 32},
           "compression": {"prune": 0.5, "latency_runs": 10, "representative_rows": 30},
           "export": {"tflite": ["int8", "dynamic"]}}
    r = tfresp.fit(cfg, out=tmp_path / "txt", quiet=True)
    c = r.report["compression"]
    assert c["pruning"]["method"] == "tfmot.prune_low_magnitude"
    assert any("query" in n for n in c["pruning"]["pruned_layers"])
    for name, sp in c["per_layer_sparsity"].items():
        if any(p in name.split("/") for p in c["pruning"]["pruned_layers"]):
            assert sp == pytest.approx(0.5, abs=0.01), name
    for variant in ("float", "int8", "dynamic"):
        assert "error" not in c[variant], c[variant]
        assert c[variant]["roundtrip"]["passed"], (variant, c[variant]["roundtrip"])
        content = (r.run_dir / f"model_{variant}.tflite").read_bytes()
        assert tflite.tflite_sparsity(content)["global"] > 0.3
    assert c["int8"]["bytes"] < 0.5 * c["float"]["bytes"]
