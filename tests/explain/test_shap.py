"""SHAP over raw columns: exact Shapley values on a small model (hand-enumerated oracle), additivity, seeding, and
the run's report section with the IG cross-check."""
import itertools
import math

import numpy as np
import pandas as pd
import pytest
import tf_keras as keras

import tfresp
from tfresp.explain.shap_explain import RawColumnCoder, explain_rows, make_predict
from tests.conftest import tiny_adult


class _Pre:
    """A tiny stand-in preprocessor: two numeric columns and one categorical (one-hot over a, b, c)."""

    spec = [{"name": "u", "kind": "numeric"}, {"name": "v", "kind": "numeric"},
            {"name": "w", "kind": "categorical", "vocab": ["a", "b", "c"]}]

    def transform_frame(self, df):
        one = np.stack([(df["w"] == k).to_numpy(np.float32) for k in ("a", "b", "c")], axis=1)
        return np.concatenate([df[["u", "v"]].to_numpy(np.float32), one], axis=1)


def _model():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.layers.Dense(8, activation="tanh", input_shape=(5,)), keras.layers.Dense(2)])
    return m


def _exact_shapley(f, x, bg):
    """Interventional Shapley values by enumerating every coalition: v(S) = mean_b f(x_S, b_~S)."""
    m = x.shape[0]

    def v(subset):
        z = bg.copy()
        z[:, list(subset)] = x[list(subset)]
        return f(z).mean()

    phi = np.zeros(m)
    for j in range(m):
        others = [k for k in range(m) if k != j]
        for r in range(m):
            for s in itertools.combinations(others, r):
                w = math.factorial(r) * math.factorial(m - r - 1) / math.factorial(m)
                phi[j] += w * (v(s + (j,)) - v(s))
    return phi


def test_kernel_shap_equals_exact_shapley_and_is_additive():
    rng = np.random.default_rng(0)
    bg = pd.DataFrame({"u": rng.normal(size=6), "v": rng.normal(size=6), "w": rng.choice(["a", "b", "c"], 6)})
    rows = pd.DataFrame({"u": [1.5, -0.3], "v": [0.2, 2.0], "w": ["c", "a"]})
    pre, core = _Pre(), _model()
    res = explain_rows(pre, core, rows, bg, target=1, seed=0)
    coder = RawColumnCoder(pre.spec, [rows, bg])
    f = make_predict(pre, core, coder, 1)
    for k in range(len(rows)):
        oracle = _exact_shapley(f, coder.encode(rows)[k], coder.encode(bg))
        assert np.allclose(res["values"][k], oracle, atol=1e-6), (res["values"][k], oracle)
    assert res["additivity_max_abs_error"] < 1e-6
    again = explain_rows(pre, core, rows, bg, target=1, seed=0)
    assert np.array_equal(again["values"], res["values"])  # seeded


def test_run_report_has_shap_with_additivity_and_ig_cross_check(tmp_path):
    cfg = tiny_adult(train={"epochs": 2, "learning_rate": 0.01},
                     explain={"method": "ig", "examples": 1, "global_sample": 20, "shap": True, "shap_rows": 5,
                              "shap_background": 10, "shap_nsamples": 300})
    r = tfresp.fit(cfg, out=str(tmp_path / "run"), quiet=True)
    sec = r.report["explanations"]["shap"]
    assert sec["additivity"]["holds"] and sec["additivity"]["max_abs_error"] < 1e-4
    assert len(sec["examples"]) == 5 and set(sec["examples"][0]["values"]) >= {"age", "education"}
    assert "validation" in sec["background"]
    ex = sec["examples"][0]
    assert sum(ex["values"].values()) == pytest.approx(ex["f_x"] - sec["expected_value"], abs=1e-4)
    assert sec["ig_cross_check"]["global"] is not None
    assert sec["ig_cross_check"]["per_row_mean"] > 0  # same target class: attributions agree in sign/rank
    assert (r.run_dir / sec["plot"]).is_file()
