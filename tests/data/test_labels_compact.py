"""tfresp/data/labels_compact.py: the same labels as ``astype(str)``, row for row, with one ``str`` object per
distinct value (the oracle is the ``astype(str)`` code it replaced)."""
import numpy as np
import pandas as pd
import pytest

from tfresp.data.labels_compact import codes_of, joined_labels, str_labels
from tfresp.fairness import metrics as fm
from tfresp.fairness import postprocess


@pytest.mark.parametrize("values", [
    pd.Series(pd.Categorical(["Male", "Female", "Male", "Female"])),
    pd.Series(pd.Categorical([1, 2, 1])),
    pd.Series(["a", "b", "a"], dtype=object),
    pd.Series([1.5, 2.0, 1.5]),
    pd.Series(np.array([b"abc", b"de", b"abc"], dtype="S3")),  # bytes labels from a tf.data source (CI failure)
    pd.Series(pd.Categorical(["b", "a", "b"], categories=["z", "a", "b"])),  # an unobserved category
    pd.Series(["a", None, np.nan], dtype=object),  # missing values: 'None' / 'nan' exactly as astype(str)
    # equal under == (one key for pd.factorize) but printed apart
    pd.Series([1, "1", 1.0, True, "a", 1], dtype=object), pd.Series([-0.0, 0.0, 1.0]),
    pd.Series(np.array([-0.0, 0.0], np.float32)), pd.Series([1.0, True, 1], dtype=object),
])
def test_series_labels_equal_astype_str(values):
    got = str_labels(values)
    assert got.dtype == object
    assert got.tolist() == values.astype(str).tolist()


@pytest.mark.parametrize("values", [
    np.array([1, 2, 1]), np.array([1.5, 2.0, 0.1 + 0.2]), np.array([b"x", b"yy", b"x"]), np.array(["x", "yy", "x"]), np.array([True, False, True]),
    np.array([1, "1", 2.0], dtype=object), np.array(["a", np.nan, None], dtype=object), ["p", "q", "p"],
    np.array([-0.0, 0.0, 2.0]), np.array([1, 1.0, True, 2], dtype=object), [1, 1.0, "x"],
])
def test_array_labels_equal_astype_str(values):
    assert str_labels(values).tolist() == np.asarray(values).astype(str).tolist()


def test_equal_labels_share_one_object():
    s = pd.Series(pd.Categorical(["Female", "Male"] * 500))
    got = str_labels(s)
    assert len({id(v) for v in got}) == 2  # astype(str) made 1000 objects
    assert len({id(v) for v in s.astype(str).to_numpy()}) == 1000


def test_codes_equal_np_unique():
    rng = np.random.default_rng(0)
    g = rng.choice(["White", "Black", "Asian-Pac-Islander", "Other"], 5000).astype(object)
    names, codes = codes_of(g)
    u, inv = np.unique(g.astype(str), return_inverse=True)
    assert names == u.tolist()
    np.testing.assert_array_equal(codes, inv.ravel())


def test_intersections_and_group_keys_equal_the_string_concatenation():
    rng = np.random.default_rng(1)
    a = rng.choice(["Female", "Male"], 3000).astype(object)
    b = pd.Series(pd.Categorical(rng.choice(["White", "Black", "Other"], 3000)))
    oracle = (a.astype(str).astype(object) + fm.INTERSECTION_SEP + np.asarray(b).astype(str).astype(object)).astype(str)
    assert joined_labels([a, b], fm.INTERSECTION_SEP).tolist() == oracle.tolist()
    assert fm.intersect({"sex": a, "race": b}, ["sex", "race"]).tolist() == oracle.tolist()
    assert postprocess.group_keys({"sex": a, "race": b}, ["sex", "race"]).tolist() == oracle.tolist()
    assert postprocess.group_keys({"sex": a}, ["sex"]).tolist() == a.tolist()


def test_a_wrong_label_is_caught():
    """The oracle can fail: a label off by one character differs from astype(str)."""
    s = pd.Series(pd.Categorical(["Male", "Female"]))
    got = str_labels(s)
    got[0] = "Mal"
    assert got.tolist() != s.astype(str).tolist()
