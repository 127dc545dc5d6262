"""A sites run directory (``federated.sites``) is a full tfresp run: manifest, model card, report.html, a SavedModel on
raw inputs (``tfresp.load``), signing; ``tfresp verify`` re-derives ε per site and every pooled / per-site metric
from the sites' counts and names any edited field; every other command works or refuses with one message (exit 2).

One tiny DP sites run (2 sites, 1 round) is shared by the module; tests that edit it work on copies."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("flwr")

import tfresp  # noqa: E402
from tfresp.cli import main  # noqa: E402
from tfresp.config import load_config  # noqa: E402
from tfresp.errors import ConfigError  # noqa: E402

from tests.federated.test_sites import _config, _oracle_epsilon, _write_sites  # noqa: E402


@pytest.fixture(scope="module")
def sites_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sites_run_dir")
    paths = _write_sites(root)
    raw = _config(paths, privacy={"target_epsilon": 3.0, "audit": False})
    raw["report"] = {"html": True}
    cfg = load_config(raw)
    result = tfresp.fit(cfg, out=root / "run", quiet=True)
    return {"root": root, "paths": paths, "config": cfg, "raw": raw, "result": result, "run": result.run_dir}


def _copy(sites_run, tmp_path, name="copy") -> Path:
    dst = tmp_path / name
    shutil.copytree(sites_run["run"], dst, symlinks=True)
    return dst


def _verify(run, capsys, *extra):
    capsys.readouterr()
    code = main(["verify", str(run), *extra])
    return code, capsys.readouterr()


def test_a_sites_run_writes_the_standard_artifacts(sites_run):
    run, report = sites_run["run"], sites_run["result"].report
    for rel in ("report.json", "report.md", "report.html", "config.yaml", "model.keras",
                "preprocessing/tabular.json", "preprocessing/serving_inputs.json", "saved_model/saved_model.pb"):
        assert (run / rel).is_file(), rel
    on_disk = json.loads((run / "report.json").read_text())
    assert on_disk["schema_version"] == "sites-1" and on_disk["manifest"] == report["manifest"]
    files = on_disk["manifest"]["files"]
    # every artifact is listed with its sha256 (independent hashlib), the rendered reports are not
    expected = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()
                      and p.name not in ("report.json", "report.md", "report.html", ".tfresp-run")
                      and not p.relative_to(run).as_posix().startswith("plots/report_"))
    assert sorted(files) == expected and "model.keras" in files and "saved_model/saved_model.pb" in files
    for rel, digest in files.items():
        assert hashlib.sha256((run / rel).read_bytes()).hexdigest() == digest, rel
    md = (run / "report.md").read_text()
    assert md.startswith("---\n") and "model-index:" in md and "| north |" in md and "## Artifacts" in md
    html = (run / "report.html").read_text()
    assert "<html" in html.lower() and "curve_per_site" in html
    exp = on_disk["export"]["saved_model"]
    assert exp["roundtrip_max_abs_diff"] <= 1e-5 and exp["roundtrip_class_id_mismatches"] == 0
    assert "SavedModel serving export" not in on_disk["federated"]["not_run"]
    assert on_disk["federated"]["privacy"]["epsilon"] == on_disk["privacy"]["epsilon"]  # kept as it was
    assert set(on_disk["federated"]["counts"]["test"]) == {"north", "south"}
    pooled = on_disk["evaluation"]["test"]["fairness"]["sex"]  # the central layout, for html / compare
    assert on_disk["fairness"]["sex"]["by_group"] == pooled["groups"]
    assert on_disk["fairness"]["sex"]["equalized_odds_difference"] == pooled["gaps"]["equalized_odds_difference"]


def test_load_serves_raw_rows_like_the_sites_encoding(sites_run):
    """tfresp.load(RUN) on a site's raw rows = model.keras on the rows as a Site encodes them (declared schema)."""
    import tf_keras as keras

    from tfresp.federated import schema

    model = tfresp.load(sites_run["run"])
    rows = pd.read_csv(sites_run["paths"]["south"]).head(50)
    served = model.predict_rows(rows)
    core = keras.models.load_model(str(sites_run["run"] / "model.keras"), compile=False)
    x = schema.preprocessor(sites_run["config"]).transform_frame(rows)
    direct = keras.activations.softmax(core(x, training=False)).numpy()
    np.testing.assert_allclose(served["probabilities"], direct, atol=1e-5)
    assert [c.decode() for c in served["class_name"]] == [["no", "yes"][i] for i in direct.argmax(axis=1)]


def test_the_recorded_counts_are_what_each_site_computes_and_give_the_pooled_numbers(sites_run):
    import tf_keras as keras

    from tfresp.federated.site import Site

    report, cfg = sites_run["result"].report, sites_run["config"]
    counts = report["federated"]["counts"]["test"]
    weights = keras.models.load_model(str(sites_run["run"] / "model.keras"), compile=False).get_weights()
    for name, path in sites_run["paths"].items():
        assert Site(name, str(path), cfg).evaluate(weights, "test") == counts[name]
    conf = sum(np.asarray(c["confusion"]) for c in counts.values())
    assert report["evaluation"]["test"]["accuracy"] == pytest.approx(np.trace(conf) / conf.sum(), abs=1e-12)
    assert report["federated"]["test"]["pooled"]["rows"] == sum(c["rows"] for c in counts.values())
    val = report["federated"]["counts"]["validation"]
    assert [v["round"] for v in val] == [1] and set(val[0]["sites"]) == {"north", "south"}


def test_verify_passes_and_says_what_it_cannot_check(sites_run, capsys):
    code, out = _verify(sites_run["run"], capsys)
    assert code == 0, out.out
    assert "verify OK" in out.out and "rows stay at the sites" in out.out and "MISMATCH" not in out.out
    checked = int(out.out.split("verify OK: ")[1].split()[0])
    assert checked > 50
    claim = sites_run["result"].report["privacy"]
    for p in claim["sites"].values():  # the ε verify accepts is dp-accounting's (independent PLD oracle)
        oracle = _oracle_epsilon(p["noise_multiplier"], p["sampling_rate"], p["steps"], p["delta"])
        assert p["epsilon"] == pytest.approx(oracle, abs=1e-6)


def _set(path, value):
    def edit(report):
        node = report
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value(node[path[-1]]) if callable(value) else value
    return edit


TAMPER = [
    ("epsilon_north", _set(["privacy", "sites", "north", "epsilon"], lambda v: v + 1e-3),
     "privacy.sites.north.epsilon"),
    ("sigma_south", _set(["privacy", "sites", "south", "noise_multiplier"], lambda v: v * 1.01),
     "privacy.sites.south.epsilon"),
    ("max_epsilon", _set(["privacy", "epsilon"], lambda v: v - 0.01), "`privacy.epsilon`"),
    ("statement", _set(["privacy", "statement"], lambda v: v.replace("ONE person", "ten people")),
     "privacy.statement"),
    ("pooled_accuracy", _set(["federated", "test", "pooled", "accuracy"], lambda v: v + 0.01),
     "federated.test.pooled.accuracy"),
    ("evaluation_accuracy", _set(["evaluation", "test", "accuracy"], 0.99), "evaluation.test.accuracy"),
    ("site_gap", _set(["federated", "test", "per_site", "south", "fairness", "sex", "gaps",
                       "demographic_parity_difference"], lambda v: v + 0.05),
     "federated.test.per_site.south.fairness.sex.gaps.demographic_parity_difference"),
    ("fairness_gap", _set(["fairness", "sex", "equalized_odds_difference"], lambda v: v + 0.05),
     "fairness.sex.equalized_odds_difference"),
    ("count", _set(["federated", "counts", "test", "north", "confusion", 0, 0], lambda v: v + 5),
     "federated.test.pooled.accuracy"),
    ("curve", _set(["federated", "curve", 0, "val_accuracy"], lambda v: v + 0.1), "federated.curve[0].val_accuracy"),
    ("no_counts", lambda r: r["federated"].pop("counts"), "federated.counts"),
    ("no_manifest", lambda r: r.pop("manifest"), "manifest"),
]


@pytest.mark.parametrize("name,edit,field", TAMPER, ids=[t[0] for t in TAMPER])
def test_verify_names_an_edited_field_and_exits_2(sites_run, tmp_path, capsys, name, edit, field):
    run = _copy(sites_run, tmp_path)
    report = json.loads((run / "report.json").read_text())
    edit(report)
    (run / "report.json").write_text(json.dumps(report, indent=2))
    code, out = _verify(run, capsys)
    assert code == 2, out.out
    assert any(field in line for line in out.out.splitlines() if line.startswith("MISMATCH")), out.out


@pytest.mark.parametrize("rel", ["model.keras", "saved_model/variables/variables.data-00000-of-00001",
                                 "preprocessing/tabular.json"])
def test_verify_names_a_changed_artifact_byte(sites_run, tmp_path, capsys, rel):
    run = _copy(sites_run, tmp_path)
    data = bytearray((run / rel).read_bytes())
    data[len(data) // 2] ^= 1
    (run / rel).write_bytes(bytes(data))
    code, out = _verify(run, capsys)
    assert code == 2 and f"manifest.files.{rel}" in out.out, out.out


def test_sign_report_compare_monitor_on_a_sites_run(sites_run, tmp_path, capsys):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    run = _copy(sites_run, tmp_path)
    keys = {}
    for who in ("owner", "other"):
        key = ed25519.Ed25519PrivateKey.generate()
        (tmp_path / f"{who}.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                                serialization.PrivateFormat.PKCS8,
                                                                serialization.NoEncryption()))
        (tmp_path / f"{who}.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        keys[who] = tmp_path / who
    assert main(["sign", str(run), "--key", str(keys["owner"]) + ".pem"]) == 0
    code, out = _verify(run, capsys, "--key", str(keys["owner"]) + ".pub")
    assert code == 0 and "signed by key" in out.out, out.out
    code, out = _verify(run, capsys, "--key", str(keys["other"]) + ".pub")
    assert code == 2 and "signature.key_id" in out.out
    # re-rendering rewrites report.md / report.html only: the manifest and the signature still hold
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0 and (run / "report.html").is_file()
    assert _verify(run, capsys, "--key", str(keys["owner"]) + ".pub")[0] == 0
    assert main(["report", str(run), "--check"]) == 0
    capsys.readouterr()
    assert main(["compare", str(sites_run["run"]), str(run), "--out", str(tmp_path / "cmp")]) == 0
    table = capsys.readouterr().out
    assert "evaluation.test.accuracy" in table and "fairness.sex.equalized_odds_difference" in table
    # monitor: no stored reference profile (it would come from training rows); a public reference file works
    south = str(sites_run["paths"]["south"])
    assert main(["monitor", str(run), south]) == 2
    assert "no stored reference profile" in capsys.readouterr().err
    assert main(["monitor", str(run), south, "--reference", str(sites_run["paths"]["north"]), "--labels", "y",
                 "--out", str(tmp_path / "mon")]) == 0
    assert (tmp_path / "mon" / "monitor.json").is_file()


@pytest.mark.parametrize("argv,words", [
    (["audit", "{run}", "--fairness"], "`tfresp audit` cannot run on a sites run"),
    (["audit", "{run}", "--privacy"], "`tfresp audit` cannot run on a sites run"),
    (["explain", "{run}", "--row", "0"], "`tfresp explain` cannot run on a sites run"),
    (["export", "{run}", "--tflite", "float16"], "`tfresp export` cannot run on a sites run"),
    (["export", "{run}", "--tflite", "int8"], "`tfresp export` cannot run on a sites run"),
    (["verify", "{run}", "--data", "x.csv"], "`--data`: a sites run's rows stay at the sites"),
    (["verify", "{run}", "--gate", "accuracy >= 0.5"], "`--gate`: a sites run has no release gates"),
])
def test_commands_that_need_rows_refuse_with_one_message(sites_run, tmp_path, capsys, argv, words):
    run = _copy(sites_run, tmp_path)
    before = {p.relative_to(run).as_posix(): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main([a.format(run=run) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("tfresp: error:") == 1 and words in err, err
    after = {p.relative_to(run).as_posix(): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before  # nothing written


def test_overwrite_replaces_a_sites_run_and_never_a_user_directory(sites_run, tmp_path):
    cfg = load_config(_config(sites_run["paths"]))  # no DP: the quickest run
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    with pytest.raises(ConfigError, match="not a tfresp run directory"):
        tfresp.fit(cfg, out=user, overwrite=True, quiet=True)
    assert (user / "notes.txt").read_text() == "keep"
    holder = sites_run["root"]  # the directory holding the site files is never replaced
    with pytest.raises(ConfigError):
        tfresp.fit(cfg, out=holder, overwrite=True, quiet=True)
    assert all(Path(p).is_file() for p in sites_run["paths"].values())
    run = _copy(sites_run, tmp_path, "again")
    with pytest.raises(ConfigError, match="already exists"):
        tfresp.fit(cfg, out=run, quiet=True)
    result = tfresp.fit(cfg, out=run, overwrite=True, quiet=True)
    assert result.report["privacy"] is None and not (run / "signature.json").exists()
    assert main(["verify", str(run)]) == 0  # a sites run without DP verifies too
    assert json.loads((run / "report.json").read_text())["manifest"]["files"]["model.keras"] == \
        hashlib.sha256((run / "model.keras").read_bytes()).hexdigest()


def test_the_recorder_notes_the_round_of_a_transport_that_fits_all_sites_at_once():
    """A deployment's transport may offer ``fit_round`` (every sampled site at once, e.g. secure aggregation): the
    recorder passes it through and files the validation counts under that round."""
    from tfresp.federated.sites_report import RecordingSites

    class AllAtOnce:
        names, description = ["a", "b"], "test"

        def fit_round(self, names, weights, rnd):
            return {"round": rnd}

        def evaluate(self, name, weights, split):
            return {"rows": 1, "split": split}

    rec = RecordingSites(AllAtOnce())
    assert rec.fit_round(["a", "b"], None, 3) == {"round": 3} and rec.names == ["a", "b"]
    rec.evaluate("a", None, "validation")
    rec.evaluate("b", None, "test")
    assert rec.counts()["validation"] == [{"round": 3, "sites": {"a": {"rows": 1, "split": "validation"}}}]
    assert rec.counts()["test"] == {"b": {"rows": 1, "split": "test"}}

    class OneByOne:
        names = ["a"]

    assert not hasattr(RecordingSites(OneByOne()), "fit_round")  # the server then calls fit site by site
