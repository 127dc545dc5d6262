"""Hostile configs and output paths, through the real CLI.

``sub`` cases run ``python -m tfresp.cli`` in a subprocess; ``inproc`` cases call ``tfresp.cli.main``
(the same code without a new interpreter, to keep CI fast). Config and path errors are raised before
TensorFlow is imported, so every subprocess case exits in about a second.
"""
import os

import pytest

from tests.hostile.conftest import base_config
from tests.hostile.harness import (assert_clean_error, listing, run_inprocess, run_subprocess, tree_hash,
                                   write_yaml)

RUNNERS = {"sub": run_subprocess, "inproc": run_inprocess}


def _cfg_case(mutate):
    def make(work):
        cfg = base_config(work / "data.csv")
        mutate(cfg)
        return write_yaml(work / "bad.yaml", cfg), []
    return make


def _raw_case(text: bytes):
    def make(work):
        (work / "bad.yaml").write_bytes(text)
        return work / "bad.yaml", []
    return make


def _set(key, value):
    def mutate(cfg):
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return mutate


def _overrides(*items):
    def make(work):
        return work / "cfg.yaml", [a for it in items for a in ("--set", it)]
    return make


CASES = [  # (id, runner, make(work) -> (config path, extra args), field named in the error)
    ("missing-config-file", "sub", lambda w: (w / "nope.yaml", []), "config"),
    ("empty-config-file", "sub", _raw_case(b""), "config"),
    ("yaml-python-tag", "sub", _raw_case(b"name: !!python/object/apply:os.system ['touch PWNED']\n"), "config"),
    ("yaml-top-level-list", "inproc", _raw_case(b"- a\n- b\n"), "config"),
    ("config-not-utf8", "sub", _raw_case("name: caf\u00e9\n".encode("latin-1")), "config"),
    ("yaml-syntax-error", "inproc", _raw_case(b"train: {epochs: 1\n"), "config"),
    ("yaml-duplicate-key", "sub", _raw_case(b"train: {epochs: 1}\ntrain: {epochs: 2}\n"), "train"),
    ("unknown-key", "sub", _cfg_case(_set("train.epoch", 3)), "train.epoch"),
    ("unknown-section", "inproc", _cfg_case(_set("privcy", {"target_epsilon": 1})), "privcy"),
    ("wrong-type-batch", "sub", _cfg_case(_set("train.batch_size", "big")), "train.batch_size"),
    ("wrong-type-hidden", "inproc", _cfg_case(_set("model.hidden", "wide")), "model.hidden"),
    ("negative-epochs", "sub", _cfg_case(_set("train.epochs", -1)), "train.epochs"),
    ("huge-epochs", "inproc", _cfg_case(_set("train.epochs", 10 ** 12)), "train.epochs"),
    ("huge-batch-value", "inproc", _cfg_case(_set("train.batch_size", 10 ** 15)), "train.batch_size"),
    ("nan-learning-rate", "sub", _raw_case(b"train: {learning_rate: .nan}\n"), "train.learning_rate"),
    ("inf-learning-rate", "inproc", _raw_case(b"train: {learning_rate: .inf}\n"), "train.learning_rate"),
    ("inf-weight-decay", "sub", _raw_case(b"train: {weight_decay: .inf}\n"), "train.weight_decay"),
    ("zero-width-layer", "inproc", _cfg_case(_set("model.hidden", [0])), "model.hidden"),
    ("epsilon-zero", "sub", _cfg_case(_set("privacy", {"target_epsilon": 0})), "privacy.target_epsilon"),
    ("epsilon-negative", "inproc", _cfg_case(_set("privacy", {"target_epsilon": -1.0})), "privacy.target_epsilon"),
    ("epsilon-nan", "inproc", _raw_case(b"privacy: {target_epsilon: .nan}\n"), "privacy"),
    ("delta-one", "sub", _cfg_case(_set("privacy", {"target_epsilon": 1, "delta": 1.0})), "privacy.delta"),
    ("delta-above-one", "inproc", _cfg_case(_set("privacy", {"target_epsilon": 1, "delta": 3})), "privacy.delta"),
    ("noise-negative", "inproc", _cfg_case(_set("privacy", {"noise_multiplier": -1})), "privacy.noise_multiplier"),
    ("negative-seed", "inproc", _cfg_case(_set("seed", -5)), "seed"),
    ("name-with-slash", "inproc", _cfg_case(_set("name", "../../etc")), "name"),
    ("unknown-strategy", "sub", _cfg_case(_set("distribute", "gpu")), "distribute"),
    ("checkpoint-every-zero", "inproc", _cfg_case(_set("train.checkpoint_every", 0)), "train.checkpoint_every"),
    ("set-without-equals", "sub", _overrides("train.epochs"), "--set"),
    ("set-unknown-key", "inproc", _overrides("train.foo=1"), "train.foo"),
    ("set-bad-yaml", "inproc", _overrides("train.epochs=[1"), "train.epochs"),
    ("set-into-scalar", "inproc", _overrides("seed.x=1"), "seed"),
    ("max-rows-zero", "inproc", _cfg_case(_set("data.max_rows", 0)), "data.max_rows"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_config(case, work):
    name, runner, make, field = case
    before = tree_hash(work)
    cfg_path, extra = make(work)
    listed = listing(work)
    snap = tree_hash(work)
    rc, out, err = RUNNERS[runner](["fit", cfg_path, "--out", work / "runs" / "r", "--quiet", *extra], work)
    assert_clean_error(rc, out, err, field)
    assert listing(work) == listed and listing(work / "runs") == []
    assert tree_hash(work) == snap
    assert before  # the pre-existing tree was hashed before the case wrote its file
    if name == "yaml-python-tag":
        assert not (work / "PWNED").exists()


# -- output paths -------------------------------------------------------------------------------
def _existing_run(work):
    run = work / "runs" / "r"
    run.mkdir()
    (run / "report.json").write_text('{"keep": true}')
    (run / ".tfresp-run").write_text('{"run_id": "earlier"}')  # what tfresp writes into every run dir
    return run


def test_out_path_traversal(work):
    rc, out, err = run_subprocess(["fit", work / "cfg.yaml", "--out", "runs/../../escape", "--quiet"], work)
    assert_clean_error(rc, out, err, "out")
    assert not (work.parent / "escape").exists() and listing(work / "runs") == []


def test_existing_out_without_overwrite_is_untouched(work):
    run = _existing_run(work)
    h = tree_hash(work)
    rc, out, err = run_subprocess(["fit", work / "cfg.yaml", "--out", run, "--quiet"], work)
    assert "--overwrite" in assert_clean_error(rc, out, err, "out")
    assert tree_hash(work) == h


def test_symlinked_out_dir_is_refused_and_target_untouched(work):
    real = _existing_run(work)
    link = work / "runs" / "link"
    link.symlink_to(real, target_is_directory=True)
    h = tree_hash(work)
    rc, out, err = run_subprocess(["fit", work / "cfg.yaml", "--out", link, "--overwrite", "--quiet"], work)
    assert "symbolic link" in assert_clean_error(rc, out, err, "out")
    assert tree_hash(work) == h


def test_out_is_an_existing_file(work):
    (work / "runs" / "r").write_text("not a dir")
    h = tree_hash(work)
    rc, out, err = run_inprocess(["fit", work / "cfg.yaml", "--out", work / "runs" / "r", "--quiet"], work)
    assert_clean_error(rc, out, err, "out")
    assert tree_hash(work) == h


def test_out_on_a_read_only_virtual_fs(work):
    rc, out, err = run_subprocess(["fit", work / "cfg.yaml", "--out", "/proc/tfresp-run", "--quiet"], work)
    assert "not writable" in assert_clean_error(rc, out, err, "out")


def test_out_in_a_directory_without_write_permission(work):
    if os.geteuid() == 0:
        pytest.skip("running as root: permission bits do not stop root (the /proc case covers the probe)")
    locked = work / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        rc, out, err = run_subprocess(["fit", work / "cfg.yaml", "--out", locked / "r", "--quiet"], work)
        assert_clean_error(rc, out, err, "out")
        assert listing(locked) == []
    finally:
        locked.chmod(0o700)
