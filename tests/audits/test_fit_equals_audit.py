"""A tfresp.fit run's sections equal the tfresp.audits functions' output on the same model and test rows."""
import numpy as np
import pandas as pd
import pytest
import tf_keras as keras

import tfresp
from tfresp import audits
from tfresp.robustness.concern import attack_space


def frame(n=1200, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({f"f{i}": rng.normal(size=n) for i in range(4)})
    df["g"] = rng.choice(["a", "b"], size=n, p=[0.6, 0.4])
    df["c"] = rng.choice(["x", "y", "z"], size=n)  # one-hot encoded: frozen by the attacks (mask 0)
    df["label"] = ((df.f0 + 0.6 * (df.g == "a") + rng.normal(scale=0.8, size=n)) > 0.3).astype(int)
    return df


def build(spec):
    inp = keras.Input(spec.shape)
    return keras.Model(inp, keras.layers.Dense(spec.num_classes)(keras.layers.Dense(16, activation="relu")(inp)))


ROB = {"eval_epsilons": [0.1], "eval_steps": 4, "restarts": 1, "noise_samples": 2, "eval_examples": 120,
       "sensitivity_examples": 64}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = {"name": "fit-vs-audit", "seed": 0, "data": {"label": "label", "sensitive": ["g"]},
           "train": {"epochs": 2, "batch_size": 64}, "fairness": {"bootstrap": 25}, "robustness": ROB}
    return tfresp.fit(cfg, model=build, data=frame(), out=tmp_path_factory.mktemp("runs") / "r", quiet=True)


def test_fairness_section_equals_the_audit_function(run):
    ctx = run.context
    test = ctx.data.test
    sec = audits.fairness(ctx.core, test.x, test.y, {"g": test.groups["g"]}, classes=ctx.data.classes,
                          bootstrap=25, seed=0)
    fit_sec = run.report["fairness"]
    assert sec["g"]["demographic_parity_difference"] is not None
    for key, value in sec.items():
        if key != "warnings":  # the run adds its own (proxies, mitigation verdicts)
            assert fit_sec[key] == value, key


def test_robustness_and_evaluation_sections_equal_the_audit_functions(run):
    ctx = run.context
    test, cfg = ctx.data.test, ctx.config.robustness
    space = attack_space(ctx.data, cfg)  # the run's attack space: numeric columns, their valid range
    sec = audits.robustness(ctx.core, test.x, test.y, eps=cfg.eval_epsilons, clip=(space.clip_min, space.clip_max),
                            mask=space.mask[0], units=space.units, seed=0, **{k: v for k, v in ROB.items()
                                                                               if k != "eval_epsilons"})
    fit_sec = run.report["robustness"]
    timing = ("seconds", "attack_seconds")

    def untimed(v):
        return {k: untimed(w) for k, w in v.items() if k not in timing} if isinstance(v, dict) else v

    assert sec["pgd@0.1"]["accuracy"] < sec["clean_accuracy"]
    assert sec["attackable_dims"] == 4 < test.x.shape[1]
    for key, value in sec.items():
        if key not in timing:
            assert untimed(fit_sec[key]) == untimed(value), key
    perf = audits.performance(ctx.core, test.x, test.y, classes=ctx.data.classes)
    assert perf["test"] == run.report["evaluation"]["test"]
