"""Versions, git hash and config hash for the report's ``run`` section."""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from importlib import metadata

PACKAGES = ["tensorflow", "tf-keras", "tensorflow-privacy", "tensorflow-model-optimization", "dp-accounting",
            "fairlearn", "lime", "transformers", "numpy", "pandas", "scikit-learn"]


def versions() -> dict:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    try:
        out["tfresp"] = metadata.version("tfresp")
    except metadata.PackageNotFoundError:
        out["tfresp"] = None
    return out


def git_hash(cwd=None):
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=cwd)
        return res.stdout.strip() or None if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def config_hash(config_dict: dict) -> str:
    blob = json.dumps(config_dict, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()
