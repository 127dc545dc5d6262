"""A run directory without the ``.tfresp-run`` marker is never replaced, even when it looks like an old run:
nothing proves tfresp wrote every file in it. The refusal says why and how to proceed."""
import json

import pytest

from tfresp.run import rundir
from tfresp.errors import ConfigError


def _tree(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_old_looking_run_without_marker_is_refused_with_remedy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old = tmp_path / "runs" / "adult"
    old.mkdir(parents=True)
    (old / "report.json").write_text(json.dumps({"schema_version": "1.0", "run": {"name": "adult"}}))
    (old / "config.yaml").write_text("name: adult\n")
    (old / "my_notes.txt").write_text("the user's own file, added later")
    before = _tree(old)
    with pytest.raises(ConfigError) as exc:
        rundir.check_target(old, overwrite=True)
    msg = str(exc.value)
    assert "older tfresp" in msg and "cannot prove" in msg and "Remedy" in msg and ".tfresp-run" in msg
    assert _tree(old) == before
    # the remedy it names works: with the marker the user created, --overwrite is accepted
    (old / rundir.MARKER).write_text("{}")
    rundir.check_target(old, overwrite=True)


@pytest.mark.parametrize("files", [{"report.json": "{}", "config.yaml": "x: 1"},      # not a tfresp report
                                   {"report.json": json.dumps({"run": {}, "schema_version": "1"})},  # no config
                                   {"data.csv": "a,b\n1,2\n"}])
def test_other_directories_keep_the_plain_refusal(tmp_path, monkeypatch, files):
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "out"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    with pytest.raises(ConfigError, match="is not a tfresp run directory") as exc:
        rundir.check_target(d, overwrite=True)
    assert "older tfresp" not in str(exc.value)
