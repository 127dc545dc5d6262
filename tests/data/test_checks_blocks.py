"""checks.check_missing / check_extreme count a block of rows at a time: the counts they report equal those of the
whole float64 array (the oracle, computed here with numpy on the whole columns)."""
import numpy as np
import pandas as pd

from tfresp.data import checks


def _frame(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    a[rng.choice(n, 37, replace=False)] = np.nan
    b = rng.normal(size=n)
    b[rng.choice(n, 5, replace=False)] = np.inf
    c = rng.normal(size=n)
    c[rng.choice(n, 11, replace=False)] = 1e300
    return pd.DataFrame({"a": a, "b": b, "c": c, "k": rng.integers(0, 5, n), "t": ["x"] * n, "f": [True] * n})


def test_blocked_counts_equal_whole_array_counts(monkeypatch):
    df = _frame()
    features = ["a", "b", "c", "k", "t", "f"]
    v = df[["a", "b", "c", "k"]].to_numpy(np.float64)
    want_nan = {c: int(n) for c, n in zip("abck", np.isnan(v).sum(axis=0)) if n}
    want_big = {c: int(n) for c, n in zip("abck", (np.isfinite(v) & (np.abs(v) > checks.EXTREME)).sum(axis=0)) if n}
    for block in (7, 128, 10_000):
        monkeypatch.setattr(checks, "CHECK_BLOCK_ROWS", block)
        problems = checks.Problems()
        assert checks.check_missing([df, df.iloc[:100]], features, "impute", problems) == {
            "a": want_nan["a"] + int(np.isnan(v[:100, 0]).sum())}
        text = " | ".join(problems)
        assert "infinite values in 1 column(s)" in text and f"'b': {5 + int(np.isinf(v[:100, 1]).sum())}" in text
        problems = checks.Problems()
        checks.check_extreme([df], features, None, problems)
        assert f"{want_big}" in " | ".join(problems)
        problems = checks.Problems()
        checks.check_extreme([df], features, {"c": [0, 1]}, problems)  # declared: not refused
        assert "beyond" not in " | ".join(problems)
