"""tfresp/data/dataset.py ``_classes``: the label checks name every problem in one message."""
import numpy as np
import pandas as pd
import pytest

from tfresp.config import load_config
from tfresp.data.dataset import prepare
from tfresp.errors import DataError


def test_undeclared_labels_and_a_single_group_are_named_together():
    n = 200
    df = pd.DataFrame({"x": np.arange(n, dtype=float), "g": ["p"] * n, "y": ["a", "b", "c", "a"] * (n // 4)})
    cfg = load_config({"data": {"source": "memory", "label": "y", "sensitive": ["g"], "features": ["x"],
                                "categories": {"y": ["a", "b"]}, "split": {"test": 0.2, "validation": 0.0}},
                       "model": {"kind": "mlp", "hidden": [4]}})
    with pytest.raises(DataError) as err:
        prepare(cfg, memory=df)
    msg = str(err.value)
    assert msg.startswith("2 problems") and "`data.categories.y`: training labels ['c'] are not declared" in msg
    assert "`data.sensitive`" in msg and "never seen in training" not in msg and "Remedy: declare every class" in msg


def _declared_city(privacy):
    rng = np.random.default_rng(0)
    n = 300
    df = pd.DataFrame({"x": rng.normal(size=n), "city": rng.choice(["Paris", "Lyon", "Nice"], n),
                       "y": rng.choice(["a", "b"], n)})
    df.loc[:4, "city"] = None  # missing values are the <missing> category, not undeclared values
    cfg = {"data": {"source": "memory", "label": "y", "categories": {"city": ["Paris", "Lyon"], "y": ["a", "b"]},
                    "numeric_ranges": {"x": [-4, 4]}, "split": {"test": 0.2, "validation": 0.0}},
           "model": {"kind": "mlp", "hidden": [4]}}
    if privacy:
        cfg["privacy"] = {"target_epsilon": 3.0}
    from tfresp.privacy.budget import make_budget

    config = load_config(cfg)
    with pytest.warns(UserWarning) if not privacy else _no_tfresp_warning():
        bundle = prepare(config, memory=df, budget=make_budget(config))
    return bundle, int((df["city"] == "Nice").sum())


class _no_tfresp_warning:
    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings(record=True)
        self.caught = self._ctx.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        assert not [w for w in self.caught if "data.categories" in str(w.message)]


def test_feature_values_outside_the_declared_vocabulary_are_warned_about():
    bundle, nice = _declared_city(privacy=False)
    text = " ".join(bundle.summary().get("warnings", []))
    assert f"column 'city': {nice} row(s) hold values not in data.categories.city" in text and "'Nice'" in text


def test_under_dp_the_undeclared_values_are_not_named():
    bundle, _ = _declared_city(privacy=True)
    assert "Nice" not in " ".join(bundle.summary().get("warnings", []))


def test_dp_class_counts_follow_the_class_order():
    # data.positive_class puts "bad" (sorted first) last: the DP counts (sorted by label) must be reordered too
    from tfresp.privacy.budget import make_budget

    rng = np.random.default_rng(0)
    n = 3000
    df = pd.DataFrame({"x": rng.normal(size=n), "y": np.where(np.arange(n) % 5 == 0, "bad", "good")})
    cfg = load_config({"data": {"source": "memory", "label": "y", "positive_class": "bad",
                                "numeric_ranges": {"x": [-4, 4]}, "split": {"test": 0.2, "validation": 0.0}},
                       "model": {"kind": "mlp", "hidden": [4]}, "privacy": {"target_epsilon": 3.0}})
    b = prepare(cfg, memory=df, budget=make_budget(cfg))
    assert b.classes == ["good", "bad"]
    counts = b.extra["class_counts"]
    exact = [int((b.train.y == i).sum()) for i in range(2)]
    assert exact[0] > 3 * exact[1]
    assert abs(counts[0] - exact[0]) < 400 and abs(counts[1] - exact[1]) < 400  # noise std ~100 rows
