"""Run directories are written atomically: everything goes to a hidden staging directory beside
the target, which is renamed into place only when the run succeeded. A failed run leaves nothing;
an existing run directory is replaced only with ``overwrite=True`` (and only after success)."""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

from tfresp.errors import ConfigError


def resolve_out(out, name: str) -> Path:
    raw = str(out) if out is not None else os.path.join("runs", name)
    if "\x00" in raw:
        raise ConfigError([("out", raw, "contains a NUL byte")])
    parts = Path(raw).parts
    if ".." in parts:
        raise ConfigError([("out", raw, "must not contain '..' (path traversal); give a direct path")])
    return Path(raw).expanduser().absolute()


def check_target(target: Path, overwrite: bool, resume: bool = False) -> None:
    """Fail early (before any work) if the run cannot be written where asked."""
    if target.is_symlink():
        raise ConfigError([("out", str(target), "is a symbolic link; refusing to write through it")])
    if target.exists() and not target.is_dir():
        raise ConfigError([("out", str(target), "exists and is not a directory")])
    if target.exists() and not overwrite and not resume:
        raise ConfigError([("out", str(target), "already exists; pass --overwrite to replace it "
                            "(it is replaced only after the new run succeeds) or choose another --out")])
    parent = target.parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError([("out", str(target), f"is not writable (no write permission on {probe})")])
    try:  # os.access says yes to root even on read-only/virtual file systems: really try (and undo)
        os.rmdir(tempfile.mkdtemp(prefix=".tfresp-probe-", dir=probe))
    except OSError as exc:
        raise ConfigError([("out", str(target), f"is not writable ({exc.strerror or exc.__class__.__name__} "
                            f"in {probe})")]) from None


def staging_dir(target: Path) -> Path:
    stage = target.parent / f".{target.name}.staging-{uuid.uuid4().hex[:8]}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        stage.mkdir()
    except OSError as exc:  # read-only or virtual file systems (/proc), full disks, root-squashed mounts
        raise ConfigError([("out", str(target), f"cannot be written ({exc.strerror or exc.__class__.__name__} "
                            f"creating {stage.parent})")]) from None
    return stage


def commit(stage: Path, target: Path, overwrite: bool) -> Path:
    """Move ``stage`` to ``target``; an old ``target`` is moved aside first and removed last."""
    old = None
    if target.exists():
        if not overwrite:
            raise ConfigError([("out", str(target), "appeared during the run; the new run is kept at "
                                f"{stage} and nothing was overwritten")])
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
    os.rename(stage, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def discard(stage: Path) -> None:
    shutil.rmtree(stage, ignore_errors=True)
