"""The data checks evaluate each distinct value once (tfresp/data/checks.py): same answers as row by row."""
import numpy as np
import pandas as pd

from tfresp.data import checks
from tfresp.data.sources import MISSING


def _row_by_row_missing(s):
    mask = s.isna().to_numpy()
    if s.dtype == object:
        mask |= s.map(lambda v: isinstance(v, str) and v.strip() in ("", MISSING)).to_numpy(dtype=bool)
    return mask


def test_missing_mask_equals_the_row_by_row_rule():
    rng = np.random.default_rng(0)
    pool = np.array(["a", " a", "", "  ", MISSING, f" {MISSING} ", None, np.nan, "b", 1, 1.0, True, "1"],
                    dtype=object)
    for _ in range(5):
        s = pd.Series(pool[rng.integers(0, len(pool), 500)], dtype=object)
        np.testing.assert_array_equal(checks.missing_mask(s), _row_by_row_missing(s))
    unhashable = pd.Series([["x"], "", None, {"k": 1}, "y"], dtype=object)
    np.testing.assert_array_equal(checks.missing_mask(unhashable), [False, True, True, False, False])
    numeric = pd.Series([1.0, np.nan, 3.0])
    np.testing.assert_array_equal(checks.missing_mask(numeric), [False, True, False])


def test_numeric_text_parsed_refused_or_left_as_before():
    n = 400
    money = pd.Series([f"${i:,}.50" for i in range(1000, 1000 + n)], dtype=object)
    money[::7] = ""
    mostly = money.copy()
    mostly[3] = "unknown"  # 1 of ~340 present values is not a number: a problem naming it
    cats = pd.Series(np.where(np.arange(n) % 2, "red", " blue"), dtype=object)
    frame = pd.DataFrame({"money": money, "mostly": mostly, "cats": cats})
    problems = checks.Problems()
    parsed = checks.parse_numeric_text(frame, ["money", "mostly", "cats"], problems)
    assert list(parsed) == ["money"]
    assert frame["money"].dtype == np.float64 and frame["money"].iloc[1] == 1001.5
    assert np.isnan(frame["money"].iloc[0])
    assert frame["cats"].dtype == object and frame["mostly"].dtype == object
    text = " | ".join(problems)
    assert len(problems) == 1 and "'mostly'" in text and "unknown" in text
