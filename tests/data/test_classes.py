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
