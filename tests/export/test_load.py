"""``tfresp.load(RUN).predict_rows``: raw column names (sanitized in the signature) and packed wide inputs."""
import numpy as np
import pandas as pd
import pytest

import tfresp
from tfresp.errors import DataError
from tfresp.data import serving_names
from tfresp.export import saved_model as sm

from tests.export.test_saved_model import ODD, _frame


@pytest.fixture(scope="module")
def packed_run(tmp_path_factory):
    """A run whose signature renames columns and packs its numeric ones (the wide-data layout, forced small)."""
    mp = pytest.MonkeyPatch()
    mp.setattr(serving_names, "PACK_NUMERIC_ABOVE", 1)  # the layout is decided in the data layer
    try:
        cfg = {"name": "p", "data": {"label": "y", "sensitive": ["g"], "split": {"test": 0.25, "validation": 0.0}},
               "model": {"kind": "mlp", "hidden": [8]}, "train": {"epochs": 2, "batch_size": 32},
               "report": {"html": False}}
        yield tfresp.fit(cfg, data=_frame(), out=tmp_path_factory.mktemp("runs") / "packed", quiet=True)
    finally:
        mp.undo()


def test_load_predicts_raw_rows_of_a_renamed_packed_signature(packed_run):
    model = tfresp.load(packed_run.run_dir)
    layout = sm.load_layout(model)
    assert layout["packed"] and set(layout["packed"]["columns"]) == {"loan amount", "Annual Income ($)", "prêt"}
    assert layout["inputs"]["état civil"] == "etat_civil"  # renamed in the signature
    test = packed_run.context.data.test.frame
    expected = packed_run.context.predictions["test"]  # the in-process model, not the SavedModel
    out = model.predict_rows(test[ODD])
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-5)
    by_dict = model.predict_rows({c: test[c].tolist() for c in ODD})  # plain lists keyed by raw names
    np.testing.assert_allclose(by_dict["probabilities"], expected, atol=1e-5)
    assert out["class_id"].shape == (len(test),)
    with pytest.raises(DataError, match=r"missing \['Annual Income \(\$\)'\].*Remedy"):
        model.predict_rows(test[[c for c in ODD if c != "Annual Income ($)"]])
