"""`tfresp verify RUN`: every forged number is caught (exit 2, the field named); an untouched run verifies; nothing
is written. One small DP + fairness + pruning + export run is fitted per module and copied per test."""
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import tiny_adult
from tests.report.conftest import edit_report, verify_cli
from tfresp.cli import main

GATES = ["privacy.epsilon <= 3", "accuracy >= 0.1", "fairness.sex.equal_opportunity_difference <= 0.9"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    import tfresp

    out = tmp_path_factory.mktemp("verify") / "run"
    cfg = tiny_adult(data={"max_rows": 1500}, privacy={"target_epsilon": 3.0},
                     fairness={"sensitive": ["sex"], "bootstrap": 20, "mitigation": "threshold",
                               "mitigate_on": ["sex"], "constraint": "equal_opportunity"},
                     compression={"prune": 0.5, "exclude": ["logits"]},
                     export={"saved_model": True, "tflite": ["float"]}, gates=GATES)
    tfresp.fit(cfg, out=str(out), quiet=True)
    return out


@pytest.fixture
def run(fitted, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(fitted, dst)
    return dst


_verify, _edit = verify_cli, edit_report


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def test_untouched_run_verifies_and_writes_nothing(run, capsys):
    before = _tree_digest(run)
    mode = {p: p.stat().st_mode for p in [run, *run.rglob("*")]}
    for p in mode:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        code, out = _verify(run, capsys)
        assert code == 0, out
        assert "verify OK" in out and "MISMATCH" not in out
        checked = int(out.split("verify OK: ")[1].split(" numbers")[0])
        assert checked > 300, out
        assert "not checked:" in out and "privacy.audit" in out
        code, out = main(["report", str(run), "--check"]), capsys.readouterr().out  # the alias, read-only too
        assert code == 0 and "verify OK" in out
    finally:
        for p, m in mode.items():
            p.chmod(m)
    assert _tree_digest(run) == before


def test_report_check_no_longer_rewrites_forged_reports(run, capsys):
    _edit(run, lambda r: r["evaluation"]["test"].__setitem__("accuracy", 0.95))
    md = (run / "report.md").read_bytes()
    code = main(["report", str(run), "--check"])
    out = capsys.readouterr().out
    assert code == 2 and "evaluation.test.accuracy" in out
    assert (run / "report.md").read_bytes() == md


def _sgd(report):
    return next(s for s in report["privacy"]["budget"]["spends"] if s["source"] == "privacy.dp_sgd")["params"]


def _reprice(report):
    """What a careful forger does after editing the spends: set privacy.epsilon to what the forged spends give,
    so that re-composing the listed spends (all the old `report --check` did) agrees."""
    import dp_accounting

    from tfresp.privacy import accounting
    from tfresp.privacy.budget import event_from_params

    spends = report["privacy"]["budget"]["spends"]
    acc = accounting.make_dp_accountant(report["privacy"]["budget"]["accountant"])
    acc.compose(dp_accounting.ComposedDpEvent([event_from_params(s["mechanism"], s["params"]) for s in spends]))
    extra = sum(float(s["params"].get("delta", 0.0) or 0.0) for s in spends)
    report["privacy"]["budget"]["extra_delta"] = extra
    report["privacy"]["epsilon"] = float(acc.get_epsilon(report["privacy"]["delta"] - extra))


def _set_sgd(report, key, value):
    report["privacy"][key] = value
    _sgd(report)[key] = value
    _reprice(report)


FORGERIES = {
    "evaluation.test.accuracy": lambda r: r["evaluation"]["test"].__setitem__("accuracy", 0.95),
    # ROC-AUC is checked against a range (near-tied scores may swap under float noise), not waved through: forged
    # 0.01 past the range (the fixture's DP model is near-degenerate on some draws: many scores within 1e-5)
    "evaluation.test.roc_auc": None,
    "gates.results[1].passed": lambda r: r["gates"]["results"][1].__setitem__("passed", False),
    "gates.results[1].value": lambda r: r["gates"]["results"][1].__setitem__("value", 0.99),
    "privacy.budget.spends[privacy.dp_sgd].noise_multiplier": lambda r: _set_sgd(r, "noise_multiplier", 3.0),
    "privacy.budget.spends[privacy.dp_sgd].steps": lambda r: _set_sgd(r, "steps", 5),
    "privacy.budget.spends": lambda r: (r["privacy"]["budget"].__setitem__("spends", [
        s for s in r["privacy"]["budget"]["spends"] if not s["source"].startswith("preprocessing")]), _reprice(r)),
    "privacy.epsilon": lambda r: r["privacy"].__setitem__("epsilon", 0.5),
    "privacy.statement": lambda r: r["privacy"].__setitem__(
        "statement", r["privacy"]["statement"].replace(f"({r['privacy']['epsilon']:.3g},", "(0.5,")),
}


@pytest.mark.parametrize("field", sorted(FORGERIES))
def test_each_forgery_is_caught_naming_the_field(run, capsys, field):
    """sigma, steps and the deleted spends are forged consistently (top level, spend, and the epsilon the forged
    spends give): the config, the ledger history and the saved preprocessing give them away."""
    forge = FORGERIES[field]
    if field == "evaluation.test.roc_auc":
        rng = _auc_range(run)
        value = rng.hi + 0.01 if rng.hi + 0.01 <= 1 else rng.lo - 0.01
        assert 0 <= value <= 1, f"the fixture's scores leave every ROC-AUC possible: [{rng.lo}, {rng.hi}]"

        def forge(r):
            r["evaluation"]["test"]["roc_auc"] = value
    _edit(run, forge)
    code, out = _verify(run, capsys)
    assert code == 2, out
    assert "verify FAILED" in out
    assert field in out, out


def _auc_range(run):
    """The range verify allows for the test ROC-AUC of ``run`` (an untouched copy)."""
    from tfresp.commands import verify

    got = {}
    real = verify._with_auc_intervals

    def capture(ev, data, predictions):
        out = real(ev, data, predictions)
        got.setdefault("test", out["test"]["roc_auc"])
        return out

    with pytest.MonkeyPatch.context() as m:
        m.setattr(verify, "_with_auc_intervals", capture)
        assert not verify.verify_run(run).mismatches
    assert isinstance(got["test"], verify.Interval)
    return got["test"]


def test_every_fairness_metric_forgery_is_caught(run, capsys):
    report = json.loads((run / "report.json").read_text())
    sec = report["fairness"]["sex"]
    names = [k for k, v in sec.items() if isinstance(v, float) and not k.endswith("_ci")]
    assert len(names) >= 8, names
    # one forged metric alone is caught and named, and nothing else is
    first = names[0]
    _edit(run, lambda r: r["fairness"]["sex"].__setitem__(first, sec[first] + 0.0123))
    code, out = _verify(run, capsys)
    assert code == 2 and f"fairness.sex.{first}" in out, (first, out)
    assert not [n for n in names[1:] if f"MISMATCH fairness.sex.{n}:" in out], out
    # every metric forged at once: verify compares each number on its own and lists every mismatch, so each
    # forged name must be listed (one verify instead of one per metric; a metric verify skips is missing here)
    _edit(run, lambda r: r["fairness"]["sex"].update({n: sec[n] + 0.0123 for n in names}))
    code, out = _verify(run, capsys)
    assert code == 2, out
    missed = [n for n in names if f"MISMATCH fairness.sex.{n}:" not in out]
    assert not missed, (missed, out)
    _edit(run, lambda r: r["fairness"]["sex"].update({n: sec[n] for n in names}))
    code, out = _verify(run, capsys)
    assert code == 0, out


def test_one_byte_of_the_saved_model_is_caught(run, capsys):
    path = run / "saved_model" / "variables" / "variables.data-00000-of-00001"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    code, out = _verify(run, capsys)
    assert code == 2, out
    assert "manifest.files.saved_model/variables/variables.data-00000-of-00001" in out
    assert "Traceback" not in out


def test_noise_multiplier_zero_exits_2_with_the_reason(run, capsys):
    def zero(r):
        r["privacy"]["noise_multiplier"] = 0.0
        for s in r["privacy"]["budget"]["spends"]:
            if s["source"] == "privacy.dp_sgd":
                s["params"]["noise_multiplier"] = 0.0
        r["privacy"]["epsilon"] = None

    _edit(run, zero)
    code, out = _verify(run, capsys)
    assert code == 2, out
    assert "noise_multiplier 0" in out and "Traceback" not in out


def test_moved_run_finds_or_asks_for_its_data(run, tmp_path, capsys, monkeypatch):
    # a CSV-sourced run: the test rows are a seeded part of the source file
    import pandas as pd

    import tfresp
    from tfresp.data.sources import load_adult

    data_dir = tmp_path / "project"
    data_dir.mkdir()
    load_adult()[0]["train"].head(900).to_csv(data_dir / "loans.csv", index=False)
    monkeypatch.chdir(data_dir)
    cfg = tiny_adult(data={"source": "loans.csv", "max_rows": None, "split": {"test": 0.3, "validation": 0.0}},
                     export={"saved_model": True})
    tfresp.fit(cfg, out=str(data_dir / "runs" / "loans"), quiet=True)
    moved = tmp_path / "elsewhere" / "loans"
    shutil.move(str(data_dir / "runs" / "loans"), moved)
    monkeypatch.chdir(tmp_path)
    code, out = _verify(moved, capsys)
    assert code == 0, out  # found at its recorded absolute path
    os.rename(data_dir / "loans.csv", tmp_path / "renamed.csv")
    code, out = _verify(moved, capsys)
    assert code == 2 and "--data" in out and "loans.csv" in out
    assert len([ln for ln in out.splitlines() if "error" in ln]) == 1
    code, out = _verify(moved, capsys, "--data", str(tmp_path / "renamed.csv"))
    assert code == 0, out
    pd.read_csv(tmp_path / "renamed.csv").head(800).to_csv(tmp_path / "other.csv", index=False)
    code, out = _verify(moved, capsys, "--data", str(tmp_path / "other.csv"))
    assert code == 2 and "--data" in out
    assert main(["explain", str(moved), "--row", "0", "--num-samples", "50", "--data",
                 str(tmp_path / "renamed.csv")]) == 0
    capsys.readouterr()


def test_signed_run_verifies_with_the_producers_key_only(run, tmp_path, capsys):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from tfresp.report.signing import check

    def pair(name):
        key = ed25519.Ed25519PrivateKey.generate()
        (tmp_path / f"{name}.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (tmp_path / f"{name}.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    pair("producer")
    pair("other")
    assert check(run, str(tmp_path / "producer.pub"))[1]  # not signed yet: a problem when a key is required
    assert main(["sign", str(run), "--key", str(tmp_path / "producer.pem")]) == 0
    capsys.readouterr()
    code, out = _verify(run, capsys, "--key", str(tmp_path / "producer.pub"))
    assert code == 0 and "signed by key" in out, out
    assert any("not by --key" in p for p in check(run, str(tmp_path / "other.pub"))[1])
    assert main(["sign", str(run), "--key", str(tmp_path / "producer.pub")]) == 2  # a public key cannot sign
    _edit(run, lambda r: r["run"].__setitem__("description", "edited after signing"))
    assert any("changed after it was signed" in p for p in check(run, str(tmp_path / "producer.pub"))[1])


def test_a_different_test_file_is_refused(tmp_path, capsys, monkeypatch):
    """A run with its own test file (data.split.test): its plain sha256 is recorded; --data with other rows is
    refused in one line before anything is computed."""
    import tfresp
    from tfresp.data.sources import load_adult

    frames = load_adult()[0]
    frames["train"].head(700).to_csv(tmp_path / "train.csv", index=False)
    frames["test"].head(300).to_csv(tmp_path / "test.csv", index=False)
    frames["test"].iloc[300:600].to_csv(tmp_path / "other.csv", index=False)
    monkeypatch.chdir(tmp_path)
    cfg = tiny_adult(data={"source": "train.csv", "max_rows": None, "split": {"test": "test.csv", "validation": 0.0}},
                     export={"saved_model": True})
    tfresp.fit(cfg, out=str(tmp_path / "run"), quiet=True)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    import hashlib

    assert report["data"]["locations"]["test"]["sha256"] == hashlib.sha256(
        (tmp_path / "test.csv").read_bytes()).hexdigest()
    code, out = _verify(tmp_path / "run", capsys, "--data", str(tmp_path / "other.csv"))
    assert code == 2 and "is not the file this run was evaluated on" in out, out
    os.rename(tmp_path / "test.csv", tmp_path / "moved_test.csv")
    code, out = _verify(tmp_path / "run", capsys)
    assert code == 2 and "pass --data PATH" in out and "test.csv" in out, out
    code, out = _verify(tmp_path / "run", capsys, "--data", str(tmp_path / "moved_test.csv"))
    assert code == 0, out


def test_a_shared_run_without_the_owners_private_key_verifies(run, capsys):
    """An auditor gets the run without private/ (the key of a DP run's keyed data fingerprints): verify still
    recomputes every number and says what it could not confirm."""
    if (run / "private").exists():
        shutil.rmtree(run / "private")
    code, out = _verify(run, capsys)
    assert code == 0, out
    assert "manifest" not in out.split("not checked:")[0]



def _tflite_sections(report):
    return [sec for sec in list((report.get("compression") or {}).values())
            + list(((report.get("export") or {}).get("tflite") or {}).values())
            if isinstance(sec, dict) and str(sec.get("path", "")).endswith("model_float.tflite")]


def _observe(run, capsys, monkeypatch):
    """One verify pass recording what it computes from: the SavedModel's and the TFLite model's test scores and
    the arguments of the TFLite variant's scores."""
    from tfresp.commands import verify
    from tfresp.compression import measure
    from tfresp.export import tflite

    seen = {}
    real_softmax, real_scores, real_serve = tflite._softmax, measure.scores, verify._serve

    def softmax(z):
        seen.setdefault("tflite", real_softmax(z))
        return seen["tflite"]

    def scores(y, proba, groups, k):
        seen["scores_args"] = (y, groups, k)
        return real_scores(y, proba, groups, k)

    def serve(signature, loaded, data, part):
        out = real_serve(signature, loaded, data, part)
        if part is data.test:
            seen["saved_model"] = out[0]
        return out

    with monkeypatch.context() as m:
        m.setattr(tflite, "_softmax", softmax)
        m.setattr(measure, "scores", scores)
        m.setattr(verify, "_serve", serve)
        assert _verify(run, capsys)[0] == 0
    return seen


def _tflite_on(monkeypatch, proba):
    from tfresp.export import tflite

    monkeypatch.setattr(tflite, "_softmax", lambda z: proba.copy())


def test_tflite_decision_within_float_noise_of_the_boundary_verifies(run, capsys, monkeypatch):
    """Two machines, one honest run: on the run's machine the TFLite model put the test row nearest the argmax
    boundary 2e-6 on one side (the report records that), on the auditor's 2e-6 on the other. Verify passes and
    notes the row; the accuracy, group gap and round-trip agreement are settled, not waved through (moved 1e-2 the
    same row fails)."""
    from tfresp.compression.measure import scores
    from tfresp.export.tflite import roundtrip

    seen = _observe(run, capsys, monkeypatch)
    y, groups, k = seen["scores_args"]
    base, ref = seen["tflite"], seen["saved_model"]
    i = int(np.argmin(np.abs(base[:, 1] - 0.5)))
    side = 1.0 if ref[i, 1] >= 0.5 else -1.0  # the SavedModel's side: the run's TFLite agreed with it

    def at(gap):
        p = base.copy()
        p[i] = [0.5 - gap, 0.5 + gap]
        return p

    run_side, other_side = at(side * 2e-6), at(-side * 2e-6)
    report = json.loads((run / "report.json").read_text())
    sections = _tflite_sections(report)
    assert sections
    for sec in sections:  # what the run's machine recorded from its own TFLite scores
        sec.update(scores(y, run_side, groups, k))
        n = int(sec["roundtrip"]["rows"])
        sec["roundtrip"] = roundtrip("float", ref[:n], run_side[:n])
        assert sec["roundtrip"]["agreement"] == 1.0
    (run / "report.json").write_text(json.dumps(report, indent=2))
    _tflite_on(monkeypatch, other_side)
    code, out = _verify(run, capsys)
    assert code == 0, out
    assert f"tflite row [{i}]" in out and f"test row [{i}]" in out and "export.tflite.float" in out, out
    _tflite_on(monkeypatch, at(-side * 1e-2))
    code, out = _verify(run, capsys)
    assert code == 2 and "export.tflite.float.roundtrip.agreement" in out, out


def test_tflite_decision_beyond_float_noise_is_a_mismatch(run, capsys, monkeypatch):
    """A confident row (farthest from the boundary) on the other side: not float noise, a mismatch."""
    seen = _observe(run, capsys, monkeypatch)
    p = seen["tflite"].copy()
    i = int(np.argmax(np.abs(p[:, 1] - 0.5)))
    p[i] = p[i, ::-1]
    _tflite_on(monkeypatch, p)
    code, out = _verify(run, capsys)
    assert code == 2 and "compression.float.accuracy" in out and "float.roundtrip.agreement" in out, out
