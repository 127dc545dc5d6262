"""``tfresp.export`` (the function) stays callable after a run imported the subpackage ``tfresp.export``."""
import importlib
import json

import tfresp
from tests.conftest import tiny_adult


def test_tfresp_export_is_callable_after_a_fit(tmp_path):
    run = tmp_path / "run"
    tfresp.fit(tiny_adult(data={"max_rows": 600}, report={"html": False}), out=str(run), quiet=True)
    importlib.import_module("tfresp.export.tflite")  # what a run (or a user) imports

    assert callable(tfresp.export)
    section = tfresp.export(str(run), ["float16"])  # the README's call
    assert "float16" in section
    report = json.loads((run / "report.json").read_text())
    assert (run / report["export"]["tflite"]["float16"]["path"]).is_file()
