"""Report readability: rules in words, failed gates on the first screen, the ε label, the privacy statement."""
import re

import pytest

from tests.report.conftest import synthetic_report
from tfresp.report.derive import derive
from tfresp.report.html import render_html
from tfresp.report.markdown import render_markdown
from tfresp.report.words import positive_probability, rule_in_words

# fairlearn's stored form of a randomized threshold rule (values of a real quickstart run)
FEMALE = {"p_ignore": 0.0, "constant": 0.0, "p0": 0.6291428571428571, "op0": ">", "t0": 0.25116559118032455,
          "p1": 0.3708571428571429, "op1": ">", "t1": 0.12395085394382477}


def _oracle(rule, score):
    """P(positive | score) by simulating the rule row by row (10,000 draws, fixed seed)."""
    import numpy as np

    rng = np.random.default_rng(0)
    u = rng.random(10_000)
    ops = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}
    p_ignore, p0 = rule.get("p_ignore", 0.0), rule.get("p0", 0.0)
    pick0 = (u >= p_ignore) & (u < p_ignore + (1 - p_ignore) * p0)
    pick1 = u >= p_ignore + (1 - p_ignore) * p0
    dec = np.where(u < p_ignore, rule.get("constant", 0.0), 0.0)
    dec = np.where(pick0, ops[rule["op0"]](score, rule["t0"]), dec)
    dec = np.where(pick1, ops[rule["op1"]](score, rule["t1"]), dec)
    return float(dec.mean())


@pytest.mark.parametrize("score", [0.0, 0.1, 0.12395085394382477, 0.2, 0.25116559118032455, 0.3, 1.0])
def test_positive_probability_matches_a_row_by_row_simulation(score):
    assert positive_probability(FEMALE, score) == pytest.approx(_oracle(FEMALE, score), abs=0.02)


def test_rule_in_words_hand_checked():
    assert rule_in_words("Female", FEMALE, ">50K", "<=50K") == (
        "Female: >50K if score > 0.251; >50K with probability 0.37 if 0.124 < score ≤ 0.251; otherwise <=50K")
    plain = {"p_ignore": 0.0, "constant": 0.0, "p0": 1.0, "op0": ">", "t0": 0.3, "p1": 0.0, "op1": ">", "t1": 0.1}
    assert rule_in_words("M", plain, "yes", "no") == "M: yes if score > 0.3; otherwise no"
    assert rule_in_words("M", {"p_ignore": 1.0, "constant": 1.0}, "yes", "no") == "M: yes for every score"
    assert rule_in_words("M", {"p_ignore": 1.0, "constant": 0.0}, "yes", "no") == "M: always no"
    near_one = dict(FEMALE, p0=0.0025, p1=0.9975)  # not rounded to "1.00"
    assert "probability 0.9975" in rule_in_words("Male", near_one)
    assert rule_in_words("x", {"p0": "a"}) is None and rule_in_words("x", None) is None


def _gated_report():
    r = synthetic_report()
    r["run"]["config"]["gates"] = ["accuracy >= 0.9", "privacy.epsilon <= 10"]
    r["fairness"]["mitigation"] = {"name": "threshold", "rules": {"F": FEMALE}}
    return derive(r)


def test_failed_gates_are_named_on_the_first_screen(tmp_path):
    html = render_html(_gated_report(), tmp_path)
    text = re.sub(r"<[^>]+>", "", html)
    first = text.index("Release gates failed (1)")
    assert first < text.index("Model details")  # in the summary, before any section
    assert "accuracy >= 0.9" in text[first:first + 200].replace("&gt;", ">")
    assert "privacy.epsilon" not in text[first:first + 200]  # only the failed one


def test_card_labels_are_not_upper_cased_and_rules_are_in_words(tmp_path):
    html = render_html(_gated_report(), tmp_path)
    assert "text-transform:uppercase" not in html.replace(" ", "")
    assert ">Privacy ε<" in html
    assert "F: yes if score &gt; 0.251; yes with probability 0.37" in html
    md = render_markdown(_gated_report())
    assert "F: yes if score \\> 0.251" in md and "failed: `accuracy >= 0.9`" in md


def test_statement_is_short_and_names_each_release_once():
    from tfresp.privacy.statement import releases, statement

    covers = [f"preprocessing.categories.c{i}" for i in range(20)]
    params = {"noise_multiplier": 24.7, "sensitivity": 3.6, "columns": [f"c{i}" for i in range(20)]}
    sec = {"epsilon": 3.0, "delta": 1e-5, "delta_times_n": 0.3, "steps": 100, "noise_multiplier": 1.1,
           "l2_norm_clip": 1.0, "sampling": "poisson", "sampling_rate": 0.01, "accountant": "pld",
           "budget": {"extra_delta": 0.0, "spends": [
               {"source": "preprocessing.histogram", "mechanism": "gaussian", "params": params, "covers": covers},
               {"source": "privacy.dp_sgd", "mechanism": "dp_sgd", "params": {"steps": 100}, "covers": ["weights"]}],
               "coverage": [{"item": c, "status": "dp", "detail": f"preprocessing.histogram (gaussian, {params})"}
                            for c in covers]
               + [{"item": "training history", "status": "not_covered", "detail": "no noise"}]}}
    text = statement(sec)
    assert text.count("preprocessing.histogram") == 2  # the release, and "by" it in the coverage
    assert "24.7" not in text and "noise_multiplier" not in text  # parameters live in the table
    assert "preprocessing.categories.c0, preprocessing.categories.c1," in text  # full, searchable item names
    assert "NOT covered" in text and "training history" in text
    assert len(text) < 3000
    rows = releases(sec)
    assert [r["release"] for r in rows] == ["preprocessing.histogram", "privacy.dp_sgd"]
    assert "noise_multiplier = 24.7" in rows[0]["parameters"] and "(20 in all)" in rows[0]["parameters"]


def test_statement_names_each_delta_term_by_its_mechanism():
    """δ set aside for static-shape truncation is not called a histogram threshold (and vice versa)."""
    from tfresp.privacy.statement import statement

    sec = {"epsilon": 3.0, "delta": 1e-5, "delta_times_n": 0.3, "steps": 100, "noise_multiplier": 1.1,
           "l2_norm_clip": 1.0, "sampling": "poisson", "sampling_rate": 0.01, "accountant": "pld",
           "budget": {"extra_delta": 3e-7, "spends": [
               {"source": "preprocessing.histogram", "mechanism": "gaussian", "params": {"delta": 2e-7},
                "covers": ["preprocessing.categories.a"]},
               {"source": "privacy.dp_sgd", "mechanism": "dp_sgd", "params": {"steps": 100, "delta": 1e-7},
                "covers": ["weights"]}], "coverage": []}}
    text = statement(sec)
    assert "1.00e-07 for the truncation of Poisson batches" in text
    assert "2.00e-07 for the failure probability of the thresholded histograms" in text
    assert "at the remaining 9.70e-06" in text
