"""The report's bootstrap draws resamples as multinomial cell counts (tfresp/fairness/metrics.py); its oracle is
the row-by-row bootstrap (``bootstrap_indices`` + ``group_rates``, checked against a fairlearn loop in
test_metrics.py). Same distribution of every statistic within Monte-Carlo noise, seeded, and fast."""

import numpy as np
import pytest

from tfresp.fairness import metrics as fm


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.choice(["A", "B", "C"], n, p=[0.6, 0.3, 0.1])
    base = np.where(g == "A", 0.35, np.where(g == "B", 0.25, 0.15))
    y = (rng.random(n) < base).astype(np.int64)
    prob = np.clip(base + 0.35 * (y - base) + rng.normal(0, 0.15, n), 0, 1)
    pred = (prob >= 0.4).astype(np.int64)
    return y, pred, prob, g


STATS = ("demographic_parity_difference", "equalized_odds_difference", "equal_opportunity_difference",
         "ece_difference", "ece_max", "accuracy_difference")


def _stats(rates):
    out = {k: v for k, v in fm.gap_stats(rates).items() if k in STATS}
    for m in ("selection_rate", "true_positive_rate", "false_positive_rate", "ece", "precision"):
        for j in range(rates[m].shape[1]):
            out[f"{m}[{j}]"] = rates[m][:, j]
    return out


def _compare(ref, new, rel_sd=0.1, shift=0.12):
    bad = []
    for k in ref:
        a, b = ref[k][np.isfinite(ref[k])], new[k][np.isfinite(new[k])]
        sd = a.std()
        if abs(b.std() / sd - 1) > rel_sd or abs(a.mean() - b.mean()) > shift * sd or \
                np.abs(np.quantile(a, [0.05, 0.95]) - np.quantile(b, [0.05, 0.95])).max() > 2.5 * shift * sd:
            bad.append((k, a.mean(), b.mean(), sd, b.std()))
    return bad


def test_cell_bootstrap_has_the_row_bootstrap_distribution():
    y, pred, prob, g = _data(3000)
    names, gidx = fm.group_codes(g)
    B = 3000
    ref = _stats(fm.group_rates(y, pred, prob, gidx, 3, fm.bootstrap_indices(len(y), B, 1)))
    new = _stats(fm.bootstrap_rates(y, pred, prob, gidx, 3, B, 2))
    assert _compare(ref, new) == []
    # the comparison can fail: resampling half as many rows widens every distribution by ~1.41
    half = fm.group_rates(y, pred, prob, gidx, 3, fm.bootstrap_indices(len(y), B, 3)[:, : len(y) // 2])
    assert len(_compare(ref, _stats(half))) > len(ref) // 2


def test_report_intervals_match_the_row_bootstrap_within_noise():
    y, pred, prob, g = _data(4000, seed=5)
    B, conf = 2000, 0.9
    rep = fm.group_report(y, pred, prob, g, min_group_size=1, bootstrap=B, confidence=conf, seed=0)
    names, gidx = fm.group_codes(g)
    rates = fm.group_rates(y, pred, prob, gidx, len(names), fm.bootstrap_indices(len(y), B, 0))
    gaps = fm.gap_stats(rates)
    for key in STATS:
        old = fm.bc_interval(gaps[key], rep[key], conf)[:2]
        sd = np.nanstd(gaps[key])
        assert np.allclose(rep[f"{key}_ci"], old, atol=0.25 * sd, rtol=0), (key, rep[f"{key}_ci"], old, sd)
    for j, name in enumerate(names):
        for m in ("selection_rate", "true_positive_rate", "ece"):
            old = fm.bc_interval(rates[m][:, j], rep["by_group"][name][m], conf)[:2]
            sd = np.nanstd(rates[m][:, j])
            assert np.allclose(rep["by_group"][name][f"{m}_ci"], old, atol=0.25 * sd, rtol=0), (name, m)
    # seeded
    again = fm.group_report(y, pred, prob, g, min_group_size=1, bootstrap=B, confidence=conf, seed=0)
    other = fm.group_report(y, pred, prob, g, min_group_size=1, bootstrap=B, confidence=conf, seed=1)
    assert again == rep and other["ece_max_ci"] != rep["ece_max_ci"]


def test_absent_group_in_a_resample_is_nan_not_zero():
    y, pred, prob, g = _data(400, seed=2)
    g = g.copy()
    g[:2] = "D"  # a group of 2 rows: absent from ~13% of resamples
    names, gidx = fm.group_codes(g)
    rates = fm.bootstrap_rates(y, pred, prob, gidx, len(names), 300, 0)
    d = names.index("D")
    absent = rates["count"][:, d] == 0
    assert 10 < absent.sum() < 100
    assert np.isnan(rates["selection_rate"][absent, d]).all()
    assert np.isfinite(rates["selection_rate"][~absent, d]).all()


def test_report_bootstrap_never_draws_row_indices(monkeypatch):
    """The report's bootstrap resamples cells, not rows: nothing of size resamples x n is drawn (the speed goal,
    <= 5 s at 160k rows, is measured in benchmarks/fairness_bootstrap.py, not timed here)."""
    n = 20_000
    y, pred, prob, g = _data(n, seed=3)

    def refuse(*args, **kwargs):
        raise AssertionError("the report drew [resamples, n] row indices")

    monkeypatch.setattr(fm, "bootstrap_indices", refuse)
    rep = fm.group_report(y, pred, prob, g, bootstrap=200)
    assert rep["bootstrap"]["resamples"] == 200 and rep["demographic_parity_difference_ci"][0] is not None
