"""End to end: compression in tfresp.fit, the report section, artifacts, and `tfresp export`."""
import json

import numpy as np
import pytest
import tensorflow as tf

import tfresp
from tests.conftest import tiny_adult
from tfresp.compression.masks import check_nm
from tfresp.export import tflite

FAST = {"latency_runs": 20, "representative_rows": 50}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "pruned"
    cfg = tiny_adult(model={"kind": "mlp", "hidden": [32, 16]}, train={"epochs": 2, "batch_size": 128},
                     compression={"prune": 0.8, "exclude": ["logits"], "quantize": "int8",
                                  "distill": {"hidden": [8], "epochs": 1}, **FAST},
                     export={"tflite": ["float16"]})
    return tfresp.fit(cfg, out=out, quiet=True)


def _selection_gap(pred, groups):
    rates = [np.mean(pred[groups == g] == 1) for g in np.unique(groups)]
    return max(rates) - min(rates)


def test_sparsity_reached_per_layer_and_logits_kept_dense(run):
    c = run.report["compression"]
    per = c["per_layer_sparsity"]
    assert per["dense_0/kernel"] == pytest.approx(0.8, abs=0.005)
    assert per["dense_1/kernel"] == pytest.approx(0.8, abs=0.005)
    assert per["logits/kernel"] == 0.0
    assert c["pruning"]["method"] == "tfmot.prune_low_magnitude"
    assert {"layer": "logits", "reason": "excluded by compression.include/exclude"} in c["pruning"]["skipped_layers"]
    # the run's model was stripped: no pruning wrapper left anywhere
    assert not any("prune_low_magnitude" in l.name for l in run.model.layers)
    assert not any("mask" in w.name or "threshold" in w.name for w in run.model.weights)


def test_sparsity_kept_after_export(run):
    loaded = tf.saved_model.load(str(run.run_dir / "saved_model"))
    kernels = {v.name: v.numpy() for v in loaded.core.variables if "kernel" in v.name}
    assert len(kernels) == 3
    hidden = [w for n, w in kernels.items() if "logits" not in n]
    assert all(np.mean(w == 0) == pytest.approx(0.8, abs=0.005) for w in hidden)
    for variant in ("float", "int8", "float16"):
        content = (run.run_dir / f"model_{variant}.tflite").read_bytes()
        sp = tflite.tflite_sparsity(content)
        fc = sorted(sp["per_layer"].values())
        assert fc[-2] >= 0.795 and fc[-1] >= 0.795, (variant, sp)  # both hidden layers stay >= 80% sparse


def test_variants_rescored_with_independent_group_gap(run):
    ctx = run.context
    c = run.report["compression"]
    for variant in ("keras", "float", "int8", "float16", "student"):
        v = c[variant]
        for key in ("accuracy", "bytes", "gzip_bytes", "latency_ms_p50", "latency_ms_p95", "parameters",
                    "sparsity", "group_gap"):
            assert key in v, (variant, key)
        assert set(v["group_gap"]) == {"sex", "race"}
    # int8: recompute from the file on disk with a plain numpy selection-rate gap (not fairlearn)
    model = tflite.TFLiteModel((run.run_dir / "model_int8.tflite").read_bytes())
    pred = model.predict_logits(ctx.data.test.x).argmax(1)
    assert c["int8"]["accuracy"] == pytest.approx(np.mean(pred == ctx.data.test.y))
    for attr in ("sex", "race"):
        assert c["int8"]["group_gap"][attr] == pytest.approx(_selection_gap(pred, ctx.data.test.groups[attr]))
    assert c["keras"]["accuracy"] == pytest.approx(run.report["evaluation"]["test"]["accuracy"])
    for variant in ("float", "int8", "float16"):
        assert c[variant]["roundtrip"]["passed"], c[variant]["roundtrip"]
        assert run.report["export"]["tflite"][variant]["path"] == f"model_{variant}.tflite"
    assert c["int8"]["bytes"] < c["float"]["bytes"]
    assert c["keras"]["gzip_bytes"] < c["keras"]["bytes"]


def test_student_is_smaller_and_rule_stated(run):
    c = run.report["compression"]
    s = c["student"]
    assert s["parameters"] < s["teacher_parameters"]
    assert (run.run_dir / "model_student.tflite").is_file()
    assert "public/unlabeled" in c["privacy_rule"]
    assert (run.run_dir / c["plots"][0]).is_file()


def test_export_command_adds_variant(run, tmp_path):
    import shutil

    from tfresp.cli import main

    copy = tmp_path / "copy"
    shutil.copytree(run.run_dir, copy)
    assert main(["export", str(copy), "--tflite", "dynamic"]) == 0
    report = json.loads((copy / "report.json").read_text())
    dyn = report["compression"]["dynamic"]
    assert dyn["roundtrip"]["passed"] and dyn["measured_by"] == "tfresp export"
    assert (copy / "model_dynamic.tflite").is_file()
    assert dyn["accuracy"] == pytest.approx(report["compression"]["float"]["accuracy"], abs=0.01)
    assert main(["export", str(tmp_path / "missing"), "--tflite", "int8"]) == 2


def test_mask_method_two_four_end_to_end(tmp_path):
    cfg = tiny_adult(model={"kind": "mlp", "hidden": [16]}, data={"max_rows": 1500},
                     compression={"structured": "2:4", "method": "mask", **FAST})
    r = tfresp.fit(cfg, out=tmp_path / "s24", quiet=True)
    c = r.report["compression"]
    assert c["pruning"]["method"] == "PruningScheduler (masks)"
    assert c["structured_2_4"]["all_groups_ok"]
    for w in r.model.weights:
        if "kernel" in w.name and w.shape[0] % 4 == 0:
            assert check_nm(w.numpy(), 2, 4), w.name


def test_bad_compression_configs_are_one_config_error(tmp_path):
    cfg = tiny_adult(privacy={"target_epsilon": 3.0},
                     compression={"structured": "2:4", "prune": 0.8, "method": "tfmot", "quantize": "qat",
                                  "distill": {"hidden": [4]}, "calibration": str(tmp_path / "nope.csv")})
    with pytest.raises(tfresp.ConfigError) as err:
        tfresp.fit(cfg, out=tmp_path / "bad", quiet=True)
    fields = {p[0] for p in err.value.problems}
    assert fields == {"compression.prune", "compression.method", "compression.quantize",
                      "compression.calibration", "compression.distill.data"}
    msg = str(err.value)
    for needle in ("2:4", "QAT cannot run under privacy", "public/unlabeled", "per-example gradients"):
        assert needle in msg
    with pytest.raises(tfresp.ConfigError):
        tfresp.load_config(tiny_adult(compression={"prune": 1.5}))
    with pytest.raises(tfresp.ConfigError):
        tfresp.load_config(tiny_adult(compression={"begin": 0.5, "end": 0.4}))


def test_int8_calibrated_on_private_rows_is_refused_under_dp(run, tmp_path):
    import types

    ctx = run.context
    cfg = types.SimpleNamespace(compression=ctx.config.compression, privacy=object(), seed=0)
    with pytest.raises(tfresp.ConfigError, match="compression.calibration"):
        tflite.calibration_rows(cfg, ctx.data)  # activation ranges of private rows: refused, not only flagged
    # public calibration rows keep it covered
    public = tmp_path / "public.csv"
    ctx.data.test.frame.iloc[:300].drop(columns=["income"]).to_csv(public, index=False)
    cfg.compression = ctx.config.compression.model_copy(update={"calibration": str(public)})
    cal = tflite.calibration_rows(cfg, ctx.data)
    assert cal[1] == {"source": "public.csv", "rows": 50, "privacy_covered": True}
    res = tflite.export_variant(ctx.core, "float16", ctx.data, None, calibration=cal, latency_runs=5, private=True)
    assert res["privacy_covered"] is True


@pytest.mark.slow
def test_pruning_composes_with_dp(tmp_path):
    """configs/adult_prune_dp.yaml on a slice: masks after each DP-SGD step, epsilon accounted, sparsity reached."""
    from pathlib import Path

    cfg = tfresp.load_config(Path(__file__).resolve().parents[2] / "configs" / "adult_prune_dp.yaml",
                             overrides=["data.max_rows=1500", "train.epochs=1", "compression.latency_runs=10",
                                        "privacy.audit=false", "report.html=false",
                                        # 1,500 rows hold too few >50K rows for the DP class threshold: declare them
                                        "data.categories={income: ['<=50K', '>50K']}"])
    r = tfresp.fit(cfg, out=tmp_path / "dp", quiet=True)
    c = r.report["compression"]
    assert c["pruning"]["method"] == "PruningScheduler (masks)"
    assert c["per_layer_sparsity"]["dense_0/kernel"] == pytest.approx(0.8, abs=0.005)
    assert r.report["privacy"]["epsilon"] <= 3.0 + 1e-6
    assert c["dynamic"]["privacy_covered"] is True and c["dynamic"]["roundtrip"]["passed"]
