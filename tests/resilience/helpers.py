"""Helpers of the resilience tests: run the CLI in a subprocess, compare checkpoints."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
HERE = Path(__file__).resolve().parent


def env():
    e = dict(os.environ)
    e.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="",
             OMP_NUM_THREADS="1", TF_NUM_INTEROP_THREADS="1", TF_NUM_INTRAOP_THREADS="1")
    return e


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(*args, timeout=300):
    return subprocess.run([PY, "-m", "tfresp.cli", *map(str, args)], capture_output=True, text=True,
                          env=env(), cwd=REPO, timeout=timeout)


def cli_signal(sig: str, at: int, *args, timeout=300, dp_secret=None):
    e = env()
    if dp_secret is not None:
        e["TFRESP_TEST_DP_SECRET"] = str(dp_secret)
    return subprocess.run([PY, str(HERE / "_signal_at.py"), sig, str(at), *map(str, args)], capture_output=True,
                          text=True, env=e, cwd=REPO, timeout=timeout)


def read_ckpt(prefix) -> dict:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    return {n: np.asarray(reader.get_tensor(n)) for n in reader.get_variable_to_shape_map()}


def max_abs_diff(a: dict, b: dict) -> float:
    assert sorted(a) == sorted(b), "the two checkpoints hold different variables"
    worst = 0.0
    for k in a:
        if a[k].dtype.kind in "fiu":
            worst = max(worst, float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)), initial=0)))
        else:
            assert (a[k] == b[k]).all(), k
    return worst


def tree_hash(root: Path) -> str:
    """sha256 over every file path, mode and content under ``root`` (to prove nothing changed)."""
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
        h.update(oct(p.stat().st_mode).encode())
    return h.hexdigest()


def final_step_dir(run: Path) -> Path:
    return run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
