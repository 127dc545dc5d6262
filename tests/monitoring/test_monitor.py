"""`tfresp monitor`: drift alarms that fire on real shifts and stay quiet without one, gates per window, outputs."""
import json
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import tfresp
from tfresp.cli import main
from tfresp.monitoring import drift
from tfresp.monitoring.profile import bin_counts, numeric_edges
from tests.conftest import tiny_adult


# --- the statistics, on synthetic data (no model) ------------------------------------------------------------
def _reference(values_num, values_cat):
    edges = numeric_edges(values_num)
    cats = pd.Series(values_cat).value_counts()
    return {"features": {"x": {"kind": "numeric", "edges": edges, "counts": bin_counts(values_num, edges)},
                         "c": {"kind": "categorical", "counts": {**{k: int(v) for k, v in cats.items()},
                                                                  "<other>": 0}}},
            "prediction": {"class_counts": {"a": 50, "b": 50}}, "model_vocabulary": {"c": ["u", "v", "w"]}}


def _window(rng, n, shift=0.0, cat_p=(0.5, 0.3, 0.2)):
    return pd.DataFrame({"x": rng.normal(shift, 1.0, n), "c": rng.choice(["u", "v", "w"], n, p=cat_p)})


def test_false_alarm_rate_without_shift_is_at_most_alpha():
    rng = np.random.default_rng(0)
    ref = _reference(rng.normal(0, 1, 5000), rng.choice(["u", "v", "w"], 5000, p=(0.5, 0.3, 0.2)))
    alarms = 0
    for _ in range(200):
        w = _window(rng, 1000)
        res = drift.window_drift(ref, w, np.full((1000, 2), 0.5), rng.integers(0, 2, 1000), alpha=0.05, min_psi=0.0)
        alarms += bool([a for a in res["alarms"] if a["type"] == "drift" and not a["column"].startswith("pred")])
    # BH at 5% over 2 columns: the per-window false alarm rate is about 5%; allow sampling error (200 windows)
    assert alarms / 200 <= 0.09, alarms


def test_shift_is_detected_and_psi_floor_filters_tiny_effects():
    rng = np.random.default_rng(1)
    ref = _reference(rng.normal(0, 1, 5000), rng.choice(["u", "v", "w"], 5000, p=(0.5, 0.3, 0.2)))
    hit = drift.window_drift(ref, _window(rng, 2000, shift=0.5), np.full((2000, 2), 0.5),
                             rng.integers(0, 2, 2000))
    assert hit["overall"]["drifted_features"] == ["x"]
    tiny = drift.window_drift(ref, _window(rng, 2000, shift=0.08), np.full((2000, 2), 0.5),
                              rng.integers(0, 2, 2000), alpha=0.5, min_psi=0.1)
    assert tiny["features"]["x"]["psi"] < 0.1 and not tiny["features"]["x"]["drift"]


def test_chi2_and_bh_match_scipy_computed_independently():
    ref, cur = [120, 80, 50, 30], [60, 70, 80, 40]
    expected = stats.chi2_contingency(np.array([ref, cur]), correction=False).pvalue
    assert drift.chi2_pvalue(ref, cur) == pytest.approx(expected, rel=1e-12)
    # Benjamini-Hochberg by hand: p_(i) * m / i, made monotone from the top
    rng = np.random.default_rng(3)
    ref_prof = _reference(rng.normal(0, 1, 3000), rng.choice(["u", "v", "w"], 3000))
    res = drift.window_drift(ref_prof, _window(rng, 500, shift=0.2, cat_p=(0.3, 0.3, 0.4)),
                             np.full((500, 2), 0.5), rng.integers(0, 2, 500))
    tests = list(res["features"].values()) + list(res["prediction"].values())
    p = np.array([t["p_value"] for t in tests])
    order = np.argsort(p)
    adj = np.minimum.accumulate((p[order] * len(p) / np.arange(1, len(p) + 1))[::-1])[::-1]
    manual = np.empty_like(adj)
    manual[order] = np.minimum(adj, 1)
    assert np.allclose([t["p_adjusted"] for t in tests], manual)


def test_unseen_category_alarm():
    rng = np.random.default_rng(2)
    ref = _reference(rng.normal(0, 1, 3000), rng.choice(["u", "v", "w"], 3000))
    w = _window(rng, 300)
    w.loc[:9, "c"] = "zz-new"
    res = drift.window_drift(ref, w, np.full((300, 2), 0.5), rng.integers(0, 2, 300))
    quiet = drift.window_drift(ref, w, np.full((300, 2), 0.5), rng.integers(0, 2, 300), min_unseen_share=0.05)
    assert quiet["features"]["c"]["unseen_rows"] == 10  # counted, but below 5% of the window: no alarm
    assert not [a for a in quiet["alarms"] if a["type"] == "unseen_category"]
    unseen = [a for a in res["alarms"] if a["type"] == "unseen_category"]
    assert unseen == [{"type": "unseen_category", "column": "c", "rows": 10, "values": ["zz-new"]}]


# --- end to end on a tiny Adult run ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("mon") / "run"
    cfg = tiny_adult(fairness={"sensitive": ["sex"], "bootstrap": 50}, train={"epochs": 3, "learning_rate": 0.01},
                     gates=["accuracy >= 0.7", "fairness.sex.equal_opportunity_difference <= 0.3"])
    tfresp.fit(cfg, out=str(out), quiet=True)
    return out


@pytest.fixture(scope="module")
def test_rows():
    from tfresp.data.sources import load_source

    frames, _ = load_source("adult")
    return frames["test"].sample(n=4000, random_state=0).reset_index(drop=True)


def test_reference_profile_has_no_rare_value_and_no_training_rows(run_dir):
    ref = json.loads((run_dir / "monitor" / "reference.json").read_text())
    assert ref["source"].startswith(("validation split", "test split"))
    for prof in list(ref["features"].values()) + list(ref["sensitive"].values()):
        if prof["kind"] == "categorical":
            assert all(v >= ref["min_cell"] for k, v in prof["counts"].items() if k != "<other>"), prof
        else:
            assert len(prof["edges"]) <= ref["max_bins"]


def test_monitor_no_shift_then_shift_and_gate_failure(run_dir, test_rows, tmp_path):
    a, b = test_rows.iloc[:2000].copy(), test_rows.iloc[2000:].copy()
    b["age"] = b["age"] + 15
    b.loc[b.index[:200], "workclass"] = "Space-force"
    res = tfresp.monitor(run_dir, [a, b], labels="income", out=tmp_path / "m")
    w0, w1 = res["windows"]
    assert [x for x in w0["alarms"] if x["type"] in ("drift", "unseen_category")] == []
    types = {(x["type"], x.get("column")) for x in w1["alarms"]}
    assert ("drift", "age") in types and ("unseen_category", "workclass") in types
    assert w0["performance"]["accuracy_ci"][0] <= w0["performance"]["accuracy"] <= w0["performance"]["accuracy_ci"][1]
    assert "sex" in w0["fairness"] and w0["gates"]["failed"] == []
    # a group's labels change: its error rate moves and the fairness gate fails (CI wholly past the threshold)
    c = test_rows.iloc[:2000].copy()
    neg = c["income"].astype(str).str.startswith("<=")
    flip = (c["sex"] == "Female") & neg
    c.loc[flip, "income"] = sorted(set(c["income"].astype(str)) - {c.loc[neg, "income"].astype(str).iloc[0]})[0]
    res2 = tfresp.monitor(run_dir, [c], labels="income", out=tmp_path / "m2")
    assert "fairness.sex.equal_opportunity_difference <= 0.3" in res2["windows"][0]["gates"]["failed"] \
        or "accuracy >= 0.7" in res2["windows"][0]["gates"]["failed"]


def test_cli_exit_codes_outputs_and_no_clobber(run_dir, test_rows, tmp_path, capsys):
    batch = tmp_path / "batch.csv"
    test_rows.iloc[:1500].to_csv(batch, index=False)
    out = tmp_path / "out"
    assert main(["monitor", str(run_dir), str(batch), "--labels", "income", "--out", str(out)]) == 0
    m = json.loads((out / "monitor.json").read_text())
    assert m["schema_version"] == "1.0" and m["summary"]["windows"] == 1 and m["throughput"]["rows_per_second"] > 0
    html = (out / "monitor.html").read_text()
    assert "Content-Security-Policy" in html and "<script" not in html.lower() and "data:image/svg+xml;base64" in html
    # a gate that cannot hold: exit 1 (what a scheduler alerts on)
    assert main(["monitor", str(run_dir), str(batch), "--labels", "income", "--out", str(out),
                 "--gate", "accuracy >= 0.995"]) == 1
    # never overwrite a file tfresp did not write
    user = tmp_path / "user"
    user.mkdir()
    (user / "monitor.json").write_text('{"mine": true}')
    assert main(["monitor", str(run_dir), str(batch), "--out", str(user)]) == 2
    assert json.loads((user / "monitor.json").read_text()) == {"mine": True}
    assert "was not written by tfresp" in capsys.readouterr().err
    # a missing column is named before anything is scored
    test_rows.iloc[:50].drop(columns=["age", "education"]).to_csv(tmp_path / "bad.csv", index=False)
    assert main(["monitor", str(run_dir), str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err
    assert "'age'" in err and "'education'" in err
    assert not (tmp_path / "o3" / "monitor.json").exists()


def test_monitor_html_in_chromium(run_dir, test_rows, tmp_path):
    from tests.report._cdp import Browser, find_chromium

    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required in CI")
        pytest.skip("chromium not installed")
    res = tfresp.monitor(run_dir, [test_rows.iloc[:1000], test_rows.iloc[1000:2000]], labels="income",
                         out=tmp_path / "m")
    with Browser(chromium, width=1200, height=900) as b:
        seen = b.load((tmp_path / "m" / "monitor.html").as_uri())
        assert seen["console_errors"] == [] and seen["exceptions"] == []
        assert [u for u in seen["requests"] if not u.startswith(("data:", "file://", "about:"))] == []
        assert b.evaluate("document.images.length") >= 2
        assert b.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)") is True
    assert res["summary"]["windows"] == 2
