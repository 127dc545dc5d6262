"""Install and first run like a user: shipped configs by name, the wheel's contents, the CLI's surface, quiet calls."""
import argparse
import filecmp
import importlib.util
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import tfresp
from tests.conftest import REPO, tiny_adult
from tfresp import configs
from tfresp.cli import _parser, main as cli_main
from tfresp.errors import ConfigError

ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def test_shipped_configs_resolve_by_name_and_a_path_still_wins(tmp_path, monkeypatch):
    assert "quickstart" in configs.names() and len(configs.names()) == len(list((REPO / "configs").glob("*.yaml")))
    by_name = tfresp.load_config("quickstart")
    assert by_name == tfresp.load_config(REPO / "configs" / "quickstart.yaml") == tfresp.load_config("quickstart.yaml")
    monkeypatch.chdir(tmp_path)  # any directory
    assert tfresp.load_config("quickstart") == by_name
    (tmp_path / "quickstart").write_text("name: mine\n")  # a user's own file of that name is read, not shadowed
    assert tfresp.load_config("quickstart").name == "mine"
    for not_a_name in ("x/quickstart", "../configs/quickstart", "/quickstart", "quick start"):
        assert configs.path(not_a_name) is None
    with pytest.raises(ConfigError) as err:
        tfresp.load_config("quikstart")
    assert "quickstart" in str(err.value) and "tfresp configs" in str(err.value)


def test_quickstart_declares_its_positive_class_and_a_checkable_tolerance():
    cfg = tfresp.load_config("quickstart")
    assert cfg.data.positive_class == ">50K"
    text = (REPO / "configs" / "quickstart.yaml").read_text()
    assert cfg.fairness.tolerance == 0.05 and "sampling error" in text  # the comment says why not 0.02


def test_the_wheel_ships_configs_identical_to_the_repository(tmp_path):
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)]
    if importlib.util.find_spec("setuptools") is not None:
        cmd.insert(5, "--no-build-isolation")  # offline where the venv has setuptools
    subprocess.run(cmd, check=True, capture_output=True, timeout=300, cwd=tmp_path)
    wheel = next(tmp_path.glob("tfresp-*.whl"))
    out = tmp_path / "unpacked"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(out)
    shipped = sorted(n for n in names if n.startswith("tfresp/configs/") and n.endswith(".yaml"))
    repo = sorted(p.name for p in (REPO / "configs").glob("*.yaml"))
    assert [Path(n).name for n in shipped] == repo
    match, mismatch, errors = filecmp.cmpfiles(REPO / "configs", out / "tfresp" / "configs", repo, shallow=False)
    assert not mismatch and not errors
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [ln for ln in zipfile.ZipFile(wheel).read(meta).decode().splitlines() if ln.startswith("Requires-Dist")]
    runtime = [r for r in requires if "extra ==" not in r]
    assert any("tensorflow<2.22,>=2.20" in r for r in runtime), runtime
    assert not any("transformers" in r or "huggingface" in r for r in runtime), runtime


def _walk(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((f"{name} {a}", h) for a, h in _walk(sub))
        elif not isinstance(action, argparse._HelpAction):
            yield "/".join(action.option_strings) or action.dest, action.help


def test_every_cli_argument_has_help_and_check_names_exit_2():
    missing = [name for name, text in _walk(_parser()) if not text]
    assert not missing, missing
    report = _parser()._subparsers._group_actions[0].choices["report"]
    check = next(a for a in report._actions if "--check" in a.option_strings)
    assert "exit 1" in check.help and "2" in check.help


def test_version_configs_and_python_dash_m(capsys):
    with pytest.raises(SystemExit) as stop:
        cli_main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"tfresp {tfresp.__version__}"
    assert cli_main(["configs"]) == 0
    listing = capsys.readouterr().out
    assert any(line.startswith("quickstart ") for line in listing.splitlines()) and "embedded (adult)" in listing
    proc = subprocess.run([sys.executable, "-m", "tfresp", "--version"], capture_output=True, text=True, env=ENV,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"tfresp {tfresp.__version__}"
    assert cli_main(["fit", "no_such_config"]) == 2


def test_accountant_warnings_are_dropped_inside_tfresp_calls_only(caplog):
    """dp-accounting's "failed to converge" warning (q=0.0948, sigma=1: seen in quickstart runs) is hidden when a
    tfresp function is on the stack, and still reaches a user who calls dp-accounting directly."""
    import dp_accounting

    from tfresp import _quiet

    _quiet.install_library_filters()

    def compute():
        acc = dp_accounting.rdp.RdpAccountant(orders=[1.1, 1.2, 1.5, 2.0, 8.0])
        acc.compose(dp_accounting.PoissonSampledDpEvent(0.094815, dp_accounting.GaussianDpEvent(1.0)), 11)
        return acc.get_epsilon(1e-5)

    with caplog.at_level(logging.WARNING, logger="absl"):
        eps_user = compute()
    outside = [r for r in caplog.records if "failed to converge" in r.getMessage()]
    assert outside, "the oracle: dp-accounting does warn for these parameters"
    caplog.clear()
    inside = {"__name__": "tfresp.privacy.fake", "compute": compute}
    with caplog.at_level(logging.WARNING, logger="absl"):
        exec("def run():\n    return compute()\n", inside)
        eps_tfresp = inside["run"]()
    assert not [r for r in caplog.records if "failed to converge" in r.getMessage()]
    assert eps_tfresp == eps_user  # only the log line is dropped
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="absl"):  # errors pass, inside tfresp too
        exec("def err():\n    import logging\n    logging.getLogger('absl').error('boom')\n", inside)
        inside["err"]()
    assert [r.getMessage() for r in caplog.records] == ["boom"]


def test_python_api_dp_fit_prints_phase_lines_and_no_library_noise(tmp_path, capfd):
    tfresp.fit(tiny_adult(privacy={"target_epsilon": 3.0, "audit": False}, fairness={"bootstrap": 10},
                          export={"saved_model": True, "tflite": ["float"]}), out=tmp_path / "run", quiet=False)
    err = capfd.readouterr().err
    for line in ("tfresp: audit fairness ...", "tfresp: export SavedModel ...", "tfresp: export TFLite (float) ...",
                 "tfresp: report ..."):
        assert line in err, err[-3000:]
    for noise in ("failed to converge", "XNNPACK", "WARNING:tensorflow", "WARNING:absl"):
        assert noise not in err, err[-3000:]


def test_ci_tf220_constraints_move_only_tensorflow_packages_and_stay_in_range():
    """.ci/run's TensorFlow 2.20 leg: constraints.txt with TensorFlow's own packages at 2.20, inside setup.cfg."""
    import configparser
    import re

    from packaging.requirements import Requirement

    proc = subprocess.run(["sed", "-f", str(REPO / ".ci" / "tf2.20.sed"), str(REPO / "constraints.txt")],
                          capture_output=True, text=True, check=True)
    before = (REPO / "constraints.txt").read_text().splitlines()
    after = proc.stdout.splitlines()
    changed = {a.split("==")[0]: b.split("==")[1] for a, b in zip(before, after) if a != b}
    assert changed == {"tensorflow": "2.20.0", "tf_keras": "2.20.1", "tensorflow-text": "2.20.1",
                       "tensorboard": "2.20.0"}
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    reqs = {re.sub(r"[-_.]+", "-", Requirement(r).name).lower(): Requirement(r)
            for r in cfg["options"]["install_requires"].splitlines() if r.strip() and not r.strip().startswith("#")}
    for name, version in changed.items():
        assert reqs[re.sub(r"[-_.]+", "-", name).lower()].specifier.contains(version), name
