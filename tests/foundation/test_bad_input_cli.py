"""Issue 2's ten bad inputs through the real CLI: one clear error line, exit code 2, no partial run dir."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, tiny_adult


def _cli(args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tfresp.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _csv(tmp_path, df, name="d.csv"):
    p = tmp_path / name
    df.to_csv(p, index=False)
    return p


def _frame(n=120):
    rng = np.random.default_rng(0)
    return pd.DataFrame({"a": rng.normal(size=n), "c": rng.choice(["x", "y"], n), "y": rng.choice(["0", "1"], n)})


def _cases(tmp_path):
    """(name, config dict or raw yaml text, extra CLI args, expected substring of the error line)."""
    nan = _frame()
    nan.loc[3, "a"] = np.nan
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "report.json").write_text("{}")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    csv_cfg = lambda p, **d: {"name": "bad", "data": {"source": str(p), "label": "y", **d},  # noqa: E731
                              "train": {"epochs": 1}}
    return [
        ("unknown key", {**tiny_adult(), "trian": {"epochs": 1}}, [], "`trian`: unknown key"),
        ("wrong type", tiny_adult(train={"epochs": "ten"}), [], "`train.epochs`"),
        ("missing label column", csv_cfg(_csv(tmp_path, _frame()), label="target"), [], "`data.label`"),
        ("NaN features", csv_cfg(_csv(tmp_path, nan, "nan.csv")), [], "NaN"),
        ("unseen label class", None, ["--set", "data.max_rows=50"], "never seen in training"),
        ("empty file", csv_cfg(empty), [], "empty"),
        ("missing file", csv_cfg(tmp_path / "nope.csv"), [], "file not found"),
        ("unwritable out dir", tiny_adult(), ["--out", str(locked / "run")], "not writable"),
        ("existing out without --overwrite", tiny_adult(), ["--out", str(existing)], "already exists"),
        ("negative epochs", tiny_adult(train={"epochs": -3}), [], "`train.epochs`"),
    ]


def _cli_many(argvs, root):
    """Each command line as `python -m tfresp.cli` runs it, all in one fresh process (one TensorFlow start-up)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, str(Path(__file__).with_name("_cli_many.py")), str(root), json.dumps(argvs)],
                         cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("@@CLI@@"))
    return json.loads(line[len("@@CLI@@"):])


def test_ten_bad_inputs_exit_2_with_one_line(tmp_path):
    names, argvs = [], []
    for name, cfg, extra, needle in _cases(tmp_path):
        if name == "unseen label class":
            train_p = _csv(tmp_path, _frame(), "train.csv")
            test_p = _csv(tmp_path, _frame().assign(y="2"), "test.csv")
            cfg = {"name": "bad", "data": {"source": str(train_p), "label": "y", "split": {"test": str(test_p)}},
                   "train": {"epochs": 1}}
        cfg_path = tmp_path / f"{name.replace(' ', '_')}.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        out_args = extra if "--out" in extra else ["--out", str(tmp_path / "out" / name.replace(" ", "_")), *extra]
        names.append((name, needle))
        argvs.append(["fit", str(cfg_path), "--quiet", *out_args])
    # the first case also through its own `python -m tfresp.cli` process: the module entry point and its exit code
    own = _cli(argvs[0], cwd=tmp_path)
    own_lines = [ln for ln in own.stderr.splitlines() if ln.startswith("tfresp: error:")]
    assert own.returncode == 2 and len(own_lines) == 1 and names[0][1] in own_lines[0], own.stderr[-1500:]
    assert "Traceback" not in own.stderr
    for (name, needle), res in zip(names, _cli_many(argvs, tmp_path)):
        err_lines = [ln for ln in res["stderr"].splitlines() if ln.startswith("tfresp: error:")]
        if name == "unwritable out dir" and os.geteuid() == 0 and res["code"] == 0:
            continue  # root can write anywhere; covered by test_unwritable_target_as_root
        assert res["code"] == 2, (name, res["code"], res["stderr"][-2000:])
        assert len(err_lines) == 1 and needle in err_lines[0], (name, res["stderr"][-1500:])
        assert "Traceback" not in res["stderr"], name
        before, after = res["before"], res["after"]
        assert before == after, f"{name}: files changed: {set(after) ^ set(before)}"
    assert (tmp_path / "existing" / "report.json").read_text() == "{}"
    (tmp_path / "locked").chmod(0o700)


def test_unwritable_target_as_root(tmp_path, monkeypatch):
    """Root ignores permission bits, so check the access test itself with os.access patched."""
    from tfresp.run import rundir
    from tfresp.errors import ConfigError

    monkeypatch.setattr(rundir.os, "access", lambda *a, **k: False)
    with pytest.raises(ConfigError, match="not writable"):
        rundir.check_target(tmp_path / "x" / "run", overwrite=False)
