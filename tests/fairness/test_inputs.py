"""Sensitive attributes used as inputs and strong proxies of them are found and stated in the model card."""
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from tests.report.conftest import synthetic_report
from tfresp.fairness.concern import PROXY_AUC, proxy_screen
from tfresp.report.derive import derive
from tfresp.report.markdown import render_markdown


def test_proxy_screen_finds_the_proxy_and_only_it():
    rng = np.random.default_rng(0)
    n = 2000
    sex = rng.choice(["F", "M"], n)
    frame = pd.DataFrame({
        "role": np.where(rng.random(n) < 0.9, np.where(sex == "F", "wife", "husband"), "other"),  # proxy
        "height": np.where(sex == "F", 165, 178) + rng.normal(0, 4, n),                            # proxy
        "noise": rng.normal(size=n), "city": rng.choice(["a", "b", "c"], n)})
    found = proxy_screen(frame, list(frame.columns), {"sex": sex}, 30)
    assert {p["feature"] for p in found} == {"role", "height"}
    h = next(p for p in found if p["feature"] == "height")
    t = (sex == h["group"]).astype(int)
    ref = roc_auc_score(t, frame["height"])
    assert abs(h["auc"] - max(ref, 1 - ref)) < 1e-12 and h["auc"] >= PROXY_AUC


def test_card_states_sensitive_inputs_and_proxies():
    r = synthetic_report()
    r["data"]["features"] = ["age", "sex"]
    r["fairness"].update({"equalized_odds_difference": 0.08, "headline_over": ["sex"],
                          "inputs": {"sensitive_as_inputs": ["sex"],
                                     "proxies": [{"feature": "relationship", "attribute": "sex", "group": "Female",
                                                  "auc": 0.87}]}})
    card = render_markdown(derive(r))
    assert "(**model inputs**: sex)" in card and "kept aside" not in card
    assert "Sensitive attributes used as model inputs: sex" in card
    assert "feature relationship predicts sex (group Female) with AUC 0.870" in card
