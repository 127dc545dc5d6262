"""Fairness confidence intervals contain their own point estimate, over many configurations.

A ``max - min`` gap is biased upwards under resampling, so the plain percentile interval misses small
gaps (the issue saw 0.0213 with CI [0.024, 0.120]); the bias-corrected interval must not.
"""
import itertools

import numpy as np

from tfresp.fairness import metrics as fm

GAPS = ("demographic_parity_difference", "equalized_odds_difference", "equal_opportunity_difference",
        "demographic_parity_ratio", "ece_difference")


def _data(n, n_groups, base, effect, seed):
    rng = np.random.default_rng(seed)
    g = rng.choice([f"g{i}" for i in range(n_groups)], n)
    gi = np.array([int(x[1:]) for x in g])
    y = (rng.random(n) < base).astype(int)
    prob = np.clip(0.3 + 0.35 * y + effect * (gi - n_groups / 2) / n_groups + rng.normal(0, 0.2, n), 0, 1)
    return y, (prob >= 0.5).astype(int), prob, g


# 24 configurations: rows x groups x base rate x effect; the confidence level alternates 0.8 / 0.95
CONFIGS = [(n, gr, b, e, (0.8, 0.95)[k % 2]) for k, (n, gr, b, e) in
           enumerate(itertools.product((150, 2000), (2, 3, 5), (0.1, 0.3), (0.0, 0.1)))]


def test_every_interval_contains_its_estimate():
    checked = widened = 0
    for k, (n, n_groups, base, effect, conf) in enumerate(CONFIGS):
        y, pred, prob, g = _data(n, n_groups, base, effect, seed=k)
        rep = fm.group_report(y, pred, prob, g, min_group_size=5, bootstrap=60, confidence=conf, seed=k)
        widened += rep["bootstrap"]["ci_widened"]
        for key in GAPS:
            if rep.get(key) is not None and rep.get(f"{key}_ci") and None not in rep[f"{key}_ci"]:
                lo, hi = rep[f"{key}_ci"]
                assert lo <= rep[key] <= hi, (n, n_groups, base, effect, conf, key, rep[key], lo, hi)
                checked += 1
        for grp, row in rep["by_group"].items():
            for m in fm.ALL_METRICS:
                ci = row.get(f"{m}_ci")
                if row.get(m) is not None and ci and None not in ci:
                    assert ci[0] <= row[m] <= ci[1], (grp, m)
                    checked += 1
    assert checked > 700
    assert widened < 0.05 * checked, widened  # the widening rule is a rare fallback, not the method


def test_percentile_intervals_would_miss_small_gaps():
    """The property is not vacuous: the plain percentile interval misses its estimate in these configs."""
    missed = 0
    for k, (n, n_groups, base, effect, conf) in enumerate(CONFIGS):
        if effect:
            continue
        y, pred, prob, g = _data(n, n_groups, base, effect, seed=k)
        names = sorted(np.unique(g).tolist())
        gidx = np.searchsorted(names, g)
        point = fm.gap_stats(fm.group_rates(y, pred, prob, gidx, len(names)))
        rates = fm.group_rates(y, pred, prob, gidx, len(names), fm.bootstrap_indices(len(y), 60, k))
        for key in GAPS[:3]:
            lo, hi = fm.percentile_ci(fm.gap_stats(rates)[key], conf)
            missed += int(not lo <= point[key][0] <= hi)
    assert missed > 0


def test_bc_interval_is_the_percentile_interval_when_unbiased():
    rng = np.random.default_rng(0)
    samples = rng.normal(0.3, 0.05, 4000)
    lo, hi, widened = fm.bc_interval(samples, float(np.median(samples)), 0.9)
    plain = np.percentile(samples, [5, 95])
    assert not widened and abs(lo - plain[0]) < 2e-3 and abs(hi - plain[1]) < 2e-3
