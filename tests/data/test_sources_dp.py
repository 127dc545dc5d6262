"""tfresp/data/sources.py under DP: what the readers note about the file's bytes carries no count of the private
rows into the report (the owner's non-DP runs keep the counts)."""
import warnings

import numpy as np

from tfresp.config import load_config
from tfresp.data.dataset import prepare
from tfresp.privacy.budget import make_budget


def _file(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["x,city,y"] + [f"{rng.normal():.3f},{rng.choice(['Paris', 'Lyon'])},{rng.choice(['a', 'b'])}"
                           for _ in range(400)]
    raw = ("\n".join(rows) + "\n").encode("utf-8").replace(b"Lyon", b"Ly\xe9on", 7)  # 7 rows with a bad byte
    raw = raw.replace(b"x,city,y", "x,city,y\n0,Z\u00fcrich,a".encode("utf-8"))  # valid UTF-8 too: damaged UTF-8
    path = tmp_path / "d.csv"
    path.write_bytes(raw)
    return path


def _summary(path, privacy):
    cfg = {"seed": 0, "data": {"source": str(path), "label": "y", "features": ["x", "city"],
                               "categories": {"y": ["a", "b"]}, "split": {"test": 0.2, "validation": 0.0}},
           "model": {"kind": "mlp", "hidden": [4]}}
    if privacy:
        cfg["privacy"] = {"target_epsilon": 3.0}
    config = load_config(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bundle = prepare(config, budget=make_budget(config))
    return " ".join(bundle.summary().get("warnings", []))


def test_the_invalid_byte_count_stays_out_of_a_dp_run(tmp_path):
    path = _file(tmp_path)
    plain = _summary(path, privacy=False)
    assert "7 invalid byte sequence(s)" in plain
    private = _summary(path, privacy=True)
    assert "invalid byte sequence" in private and "7" not in private
