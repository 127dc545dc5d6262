"""The robustness concern end to end through tfresp.fit (tiny settings)."""
import json

import numpy as np
import pytest

import tfresp
from tests.conftest import tiny_adult
from tfresp.errors import ConfigError, DataError
from tfresp.robustness.concern import attack_space, default_large_epsilon, eps_key

FAST_EVAL = {"eval_steps": 8, "restarts": 2, "eval_examples": 120, "noise_samples": 3,
             "sensitivity_examples": 64}


def test_adult_madry_report_and_frozen_categoricals(tmp_path):
    cfg = tiny_adult(export={"saved_model": False},
                     robustness={"train": "madry", "epsilon": 0.1, "steps": 3, "eval_epsilons": [0.05, 0.1],
                                 **FAST_EVAL})
    res = tfresp.fit(cfg, out=tmp_path / "run", quiet=True)
    rob = json.loads((res.run_dir / "report.json").read_text())["robustness"]
    for key in ("pgd@0.05", "pgd@0.1", "fgsm@0.1", "noise@0.1"):
        assert 0.0 <= rob[key]["accuracy"] <= 1.0
        assert rob[key]["max_perturbation"] <= rob[key]["epsilon"] + 1e-5
    assert rob["pgd@0.1"]["accuracy"] <= rob["clean_accuracy"]
    assert rob["pgd@0.1"]["accuracy"] <= rob["pgd@0.05"]["accuracy"] + 2 / 120
    pre = res.context.data.preprocessor
    assert rob["attackable_dims"] == int(pre.numeric_mask().sum()) < pre.encoded_dim
    # the robust step's cost is measured, not asserted: a timing claim fails on a loaded machine (issue 26: speed
    # lives in benchmarks/); the section must be internally consistent
    t = rob["training_time"]
    assert t["step_seconds_clean"] > 0 and t["step_seconds_robust"] > 0
    assert t["step_time_ratio"] == pytest.approx(t["step_seconds_robust"] / t["step_seconds_clean"])
    assert 0 < rob["training_time"]["fit_cpu_seconds"] == res.report["training"]["timings"]["fit_cpu_seconds"]
    assert set(rob["sanity"]) >= {"vanishes_at_large_epsilon", "white_box_beats_noise", "passed"}
    assert (res.run_dir / rob["plots"][0]).exists()
    assert any("Madry" in n for n in res.report["training"]["notes"])


def test_attack_space_for_tabular_uses_train_ranges():
    from tfresp.config import load_config
    from tfresp.data.dataset import prepare

    cfg = load_config(tiny_adult(robustness={}))
    data = prepare(cfg)
    space = attack_space(data, cfg.robustness)
    np.testing.assert_array_equal(space.mask[0], data.preprocessor.numeric_mask())
    np.testing.assert_allclose(space.clip_min[0], data.train.x.min(axis=0))
    np.testing.assert_allclose(space.clip_max[0], data.train.x.max(axis=0))
    large = default_large_epsilon(space, "linf", data.train.x.shape[1:])
    numeric = data.preprocessor.numeric_mask() > 0
    assert np.isclose(large, (data.train.x.max(0) - data.train.x.min(0))[numeric].max())


def test_eval_must_be_stronger_than_training(tmp_path):
    cfg = tiny_adult(robustness={"train": "madry", "steps": 10, "eval_steps": 10})
    with pytest.raises(ConfigError, match="eval_steps"):
        tfresp.fit(cfg, out=tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()


def test_tabular_without_numeric_features_is_refused(tmp_path):
    cfg = tiny_adult(data={"features": ["workclass", "education"]}, robustness={})
    with pytest.raises(DataError, match="numeric"):
        tfresp.fit(cfg, out=tmp_path / "r", quiet=True)


def test_digits_cnn_eval_only_flags_nothing_and_keys(tmp_path):
    cfg = {"name": "dig", "data": {"source": "digits", "label": "label"}, "model": {"kind": "cnn", "hidden": [8]},
           "train": {"epochs": 3, "batch_size": 64, "learning_rate": 0.005},
           "robustness": {"eval_epsilons": [0.1], **FAST_EVAL}}
    res = tfresp.fit(cfg, out=tmp_path / "run", quiet=True)
    rob = res.report["robustness"]
    assert eps_key("pgd", 0.1) in rob and "training_time" not in rob
    assert rob["sanity"]["large_epsilon"] == 1.0
    assert rob["sanity"]["accuracy_at_large_epsilon"] <= 0.05
    assert rob["sensitivity"]["parameter_sensitivity"] > 0
    assert res.report["export"]["saved_model"]["roundtrip_max_abs_diff"] < 1e-5
    # `tfresp audit RUN --robustness` rebuilds the model from the run and reproduces the numbers
    from tfresp.cli import main

    report_path = res.run_dir / "report.json"
    before = json.loads(report_path.read_text())["robustness"]
    assert main(["audit", str(res.run_dir), "--robustness"]) == 0
    after = json.loads(report_path.read_text())["robustness"]
    assert after["audited_by"] == "tfresp audit --robustness"
    assert after["clean_accuracy"] == before["clean_accuracy"]
    assert abs(after["pgd@0.1"]["accuracy"] - before["pgd@0.1"]["accuracy"]) <= 0.05
    assert main(["audit", str(tmp_path / "missing"), "--robustness"]) == 2
