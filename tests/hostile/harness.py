"""The hostile-input harness: run the CLI (subprocess or in-process ``cli.main``), check the contract.

Contract for every hostile input: exit code 2, exactly one ``tfresp: error:`` line that names the
field, no traceback, no run directory / staging directory / checkpoint working directory left behind,
and nothing pre-existing modified.
"""
import contextlib
import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def env():
    e = dict(os.environ)
    e.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="")
    return e


def run_subprocess(args, cwd):
    p = subprocess.run([sys.executable, "-m", "tfresp.cli", *map(str, args)], capture_output=True, text=True,
                       env=env(), cwd=cwd, timeout=300)
    return p.returncode, p.stdout, p.stderr


def run_inprocess(args, cwd):
    from tfresp import cli

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = cli.main([str(a) for a in args])
            except SystemExit as exc:  # argparse errors
                rc = exc.code
    finally:
        os.chdir(old)
    return rc, out.getvalue(), err.getvalue()


def tree_hash(root: Path) -> str:
    """sha256 over names, modes and contents of everything under ``root`` (hidden entries included)."""
    h = hashlib.sha256()
    root = Path(root)
    for p in sorted(root.rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        st = p.lstat()
        h.update(oct(st.st_mode).encode())
        if p.is_symlink():
            h.update(os.readlink(p).encode())
        elif p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def listing(d: Path):
    return sorted(p.name for p in Path(d).iterdir())


def write_yaml(path: Path, cfg) -> Path:
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


def assert_clean_error(rc, stdout, stderr, field: str):
    assert rc == 2, f"exit {rc}\n{stderr[-2000:]}"
    lines = [ln for ln in stderr.splitlines() if ln.startswith("tfresp: error:")]
    assert len(lines) == 1, stderr[-2000:]
    assert field in lines[0], f"{field!r} not named in: {lines[0]}"
    assert "Traceback" not in stderr, stderr[-2000:]
    assert "run written" not in stdout
    return lines[0]
