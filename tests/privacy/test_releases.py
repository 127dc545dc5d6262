"""Issue 23 (Releases): under DP nothing in the run directory is computed from private rows outside the budget
unless the statement names it — the data fingerprint, the training-split summary, int8 calibration, distillation
data and the monitor reference."""
import hashlib
import json
import shutil
import stat

import numpy as np
import pytest

import tfresp
from tfresp.data.sources import load_adult
from tfresp.errors import ConfigError, DataError
from tests.conftest import tiny_adult

ROWS = 1200


def _csv(path, age=None):
    df = load_adult()[0]["train"].iloc[:ROWS].copy()
    if age is not None:
        df.loc[0, "age"] = age  # the secret: the first row's value
    df.to_csv(path, index=False)
    return path


def _cfg(data, **over):
    over = {"privacy": {"target_epsilon": 3.0, "audit": False}, **over}
    return tiny_adult(data={"source": str(data), "max_rows": None, "sensitive": ["sex"],
                            "split": {"test": 0.2, "validation": 0.1}},
                      train={"epochs": 1, "batch_size": 64}, **over)


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rel")
    data = _csv(root / "loans.csv", age=1234)
    res = tfresp.fit(_cfg(data), out=root / "run", quiet=True)
    return res, data


def _texts(run):
    return "".join((run / f).read_text(encoding="utf-8") for f in ("report.json", "report.md", "report.html"))


def test_no_plain_hash_of_training_file_and_brute_force_fails(dp_run):
    """An attacker who knows every other row tries candidate ages against the published digest: with a plain
    sha256 the true age is found (old code); with the keyed fingerprint no candidate matches."""
    res, data = dp_run
    run = res.run_dir
    text = _texts(run)
    true_digest = hashlib.sha256(data.read_bytes()).hexdigest()
    assert true_digest not in text
    df = load_adult()[0]["train"].iloc[:ROWS].copy()
    found = []
    for age in list(range(1200, 1260)):
        df.loc[0, "age"] = age
        digest = hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()
        if digest in text:
            found.append(age)
    assert found == []
    # the attack itself works: the candidate set holds the true file's digest
    df.loc[0, "age"] = 1234
    assert hashlib.sha256(df.to_csv(index=False).encode()).hexdigest() == true_digest
    files = res.report["data"]["source"]["files"]
    assert all(v.startswith("hmac-sha256:") for v in files.values())
    cov = {c["item"]: c for c in res.report["privacy"]["budget"]["coverage"]}
    assert "data.source.files" in cov


def test_key_is_owner_only(dp_run):
    run = dp_run[0].run_dir
    d, f = run / "private", run / "private" / "data_key.json"
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert len(json.loads(f.read_text())["key"]) == 64


def test_run_data_checks_keyed_fingerprint(dp_run, tmp_path):
    """audit/export/explain's check: the run's own file matches, an edited one does not, and without the key
    file (a shared copy of the run) the command refuses instead of skipping the check."""
    from tfresp.config import load_config
    from tfresp.run_data import file_matches_run, verify_source

    res, data = dp_run
    run = res.run_dir
    report = json.loads((run / "report.json").read_text())
    config = load_config(run / "config.yaml")
    verify_source(run, config, report)  # the same file: accepted
    assert file_matches_run(run, data, "train")
    edited = _csv(tmp_path / "loans.csv", age=1235)
    assert not file_matches_run(run, edited, "train")
    copy = tmp_path / "shared"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "private")
    with pytest.raises(DataError, match="private/data_key.json"):
        file_matches_run(copy, data, "train")


def test_check_prepared_with_keyed_digest(dp_run):
    from tfresp.config import load_config
    from tfresp.data.dataset import prepare, saved_preprocessor
    from tfresp.run_data import check_prepared

    res, _ = dp_run
    run = res.run_dir
    report = json.loads((run / "report.json").read_text())
    config = load_config(run / "config.yaml")
    data = prepare(config, preprocessor=saved_preprocessor(run))
    check_prepared(run, data, report)
    data.info["files"] = {k: "0" * 64 for k in data.info["files"]}
    with pytest.raises(DataError, match="differs"):
        check_prepared(run, data, report)


def test_train_split_summary_through_dp_or_withheld(dp_run):
    """The exact class counts and sensitive values/sizes of the training split are not published."""
    res, _ = dp_run
    train = res.report["data"]["splits"]["train"]
    assert "group_sizes" not in train
    # the label is declared here, so there are no DP label counts: the balance is withheld
    assert "label_balance" not in train
    assert set(train["withheld_under_dp"]) == {"group_sizes", "label_balance"}
    assert res.report["data"]["splits"]["test"]["group_sizes"]  # held-out splits keep theirs


def test_label_balance_from_dp_counts():
    """With DP label counts (undeclared label), label_balance is their normalization, not the exact counts."""
    from types import SimpleNamespace

    from tfresp.privacy.budget import PrivacyBudget
    from tfresp.privacy.releases import _train_split

    budget = PrivacyBudget(3.0, 1e-5)
    ctx = SimpleNamespace(data=SimpleNamespace(extra={"class_counts": np.array([2041.7, 658.1])},
                                               classes=["<=50K", ">50K"]))
    train = {"rows": 2700, "label_balance": {"<=50K": 2039 / 2700, ">50K": 661 / 2700},
             "group_sizes": {"sex": {"Female": 900, "Male": 1800}}}
    _train_split(ctx, train, budget)
    assert train["label_balance"]["<=50K"] == pytest.approx(2041.7 / 2699.8)
    assert "group_sizes" not in train
    assert any(c.item == "data.splits.train.label_balance" and c.status == "dp" for c in budget.coverage)


def test_monitor_reference_in_coverage(dp_run):
    res, _ = dp_run
    assert (res.run_dir / "monitor" / "reference.json").is_file()
    cov = {c["item"]: c for c in res.report["privacy"]["budget"]["coverage"]}
    assert "monitor/reference.json" in cov
    assert "validation" in cov["monitor/reference.json"]["detail"]
    assert "monitor/reference.json" in res.report["privacy"]["statement"]
    ref = json.loads((res.run_dir / "monitor" / "reference.json").read_text())
    assert "training" in ref["vocabulary_source"]


def test_export_int8_refuses_private_calibration(dp_run, tmp_path):
    """`tfresp export RUN --tflite int8` on a DP run would calibrate on private training rows: refused."""
    res, _ = dp_run
    run = tmp_path / "copy"
    shutil.copytree(res.run_dir, run)
    before = (run / "report.json").read_bytes()
    from tfresp.commands.export import export_run  # (tfresp.export is shadowed by the tfresp.export package)

    with pytest.raises(ConfigError, match="calibration"):
        export_run(run, ["int8"])
    assert not (run / "model_int8.tflite").exists()
    assert (run / "report.json").read_bytes() == before


def test_fit_refuses_int8_private_calibration_before_training(tmp_path):
    data = _csv(tmp_path / "d.csv")
    for over in ({"export": {"tflite": ["int8"]}}, {"compression": {"quantize": "int8"}}):
        with pytest.raises(ConfigError, match="calibration"):
            tfresp.fit(_cfg(data, **over), out=tmp_path / "r", quiet=True)
        assert not (tmp_path / "r").exists()


def test_distill_data_that_is_the_training_file_is_refused(tmp_path):
    data = _csv(tmp_path / "d.csv")
    copy = tmp_path / "public.csv"
    shutil.copyfile(data, copy)  # same bytes under another name: same fingerprint
    for path in (data, copy):
        cfg = _cfg(data, compression={"distill": {"hidden": [8], "data": str(path), "alpha": 0}})
        with pytest.raises(ConfigError, match="training data"):
            tfresp.fit(cfg, out=tmp_path / "r", quiet=True)
        assert not (tmp_path / "r").exists()
    cfg = _cfg(data, compression={"calibration": str(copy)}, export={"tflite": ["int8"]})
    with pytest.raises(ConfigError, match="training data"):
        tfresp.fit(cfg, out=tmp_path / "r", quiet=True)


def test_non_dp_run_keeps_plain_sha256(tmp_path):
    data = _csv(tmp_path / "d.csv")
    cfg = _cfg(data, privacy=None)
    res = tfresp.fit(cfg, out=tmp_path / "r", quiet=True)
    assert list(res.report["data"]["source"]["files"].values()) == [hashlib.sha256(data.read_bytes()).hexdigest()]
    assert not (res.run_dir / "private").exists()
    assert "label_balance" in res.report["data"]["splits"]["train"]


def test_federated_dp_reference_names_the_training_vocabulary(tmp_path):
    """Client-level DP run: the monitor reference holds the exact training vocabulary; its source says so and the
    privacy statement names it as not covered; the data fingerprints are keyed."""
    data = _csv(tmp_path / "d.csv")
    cfg = _cfg(data, privacy=None, federated={"clients": 20, "partition": "iid", "rounds": 2,
                                              "clients_per_round": 10, "local_batch_size": 64,
                                              "dp": {"target_epsilon": 8.0, "clip_norm": 0.5}})
    res = tfresp.fit(cfg, out=tmp_path / "r", quiet=True)
    ref = json.loads((res.run_dir / "monitor" / "reference.json").read_text())
    assert "exact values of the training rows" in ref["vocabulary_source"]
    assert "monitor/reference.json" in res.report["privacy"]["statement"]
    assert "not covered" in res.report["privacy"]["statement"].split("monitor/reference.json")[1]
    assert all(v.startswith("hmac-sha256:") for v in res.report["data"]["source"]["files"].values())
    assert "group_sizes" not in res.report["data"]["splits"]["train"]
