"""Run directories are written atomically: everything goes to a hidden staging directory beside
the target, which is renamed into place only when the run succeeded. A failed run leaves nothing.

Every run directory carries a marker file, ``.tfresp-run`` (JSON with the run id). ``--overwrite``
replaces only a directory with that marker (or an empty one), and never the current directory, one of
its parents, or a directory holding the run's data or config: tfresp never deletes what it did not
write. A lock file beside the target (``.<name>.lock``, ``fcntl.flock``) keeps two runs from sharing it.

A directory without the marker that *looks* like a run (``report.json`` with ``run`` / ``schema_version``
and ``config.yaml``, as written before the marker existed) is still refused: those files are plain text
anyone can write or copy, and the directory may have gained the user's own files since, so nothing proves
that tfresp wrote everything in it. The error says so and names the remedies (move it aside, or add the
marker yourself when you know it holds only that run).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path

from tfresp.errors import ConfigError

MARKER = ".tfresp-run"
# The longest suffix tfresp adds to the run dir's name for its siblings (".<name>.staging-xxxxxxxx").
_SIBLING_EXTRA = len("..staging-") + 8
_NAME_MAX = 255


def resolve_out(out, name: str) -> Path:
    raw = str(out) if out is not None else os.path.join("runs", name)
    if "\x00" in raw:
        raise ConfigError([("out", raw, "contains a NUL byte")])
    parts = Path(raw).parts
    if ".." in parts:
        raise ConfigError([("out", raw, "must not contain '..' (path traversal); give a direct path")])
    path = Path(raw).expanduser().absolute()
    too_long = [p for p in path.parts if len(p.encode("utf-8", "surrogateescape")) > _NAME_MAX]
    if len(path.name.encode("utf-8", "surrogateescape")) > _NAME_MAX - _SIBLING_EXTRA:
        too_long.append(path.name)
    if too_long or len(str(path).encode("utf-8", "surrogateescape")) > 4000:
        raise ConfigError([("out", raw[:80] + ("..." if len(raw) > 80 else ""),
                            f"is too long for the file system (the run dir's name may have at most "
                            f"{_NAME_MAX - _SIBLING_EXTRA} bytes, the whole path 4000); choose a shorter --out")])
    return path


def is_run_dir(path: Path) -> bool:
    """True when ``path`` is a directory tfresp wrote (it holds the ``.tfresp-run`` marker file)."""
    marker = Path(path) / MARKER
    return Path(path).is_dir() and not Path(path).is_symlink() and marker.is_file() and not marker.is_symlink()


def looks_like_old_run(path: Path) -> bool:
    """True for a directory holding a tfresp-shaped ``report.json`` and a ``config.yaml`` (no proof of origin)."""
    report, config = Path(path) / "report.json", Path(path) / "config.yaml"
    if not (report.is_file() and config.is_file()) or report.is_symlink():
        return False
    try:
        if report.stat().st_size > 64 * 2 ** 20:
            return False
        data = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "run" in data and "schema_version" in data


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_target(target: Path, overwrite: bool, resume: bool = False, protect=()) -> None:
    """Fail early (before any work) if the run cannot be written where asked.

    Args:
        protect: paths (the data file, the config file) that must never lie inside a replaced directory.
    """
    if target.is_symlink():
        raise ConfigError([("out", str(target), "is a symbolic link; refusing to write through it")])
    if target.exists() and not target.is_dir():
        raise ConfigError([("out", str(target), "exists and is not a directory")])
    if target.exists():
        real = target.resolve()
        cwd = Path.cwd().resolve()
        if _inside(cwd, real):
            raise ConfigError([("out", str(target), "is the current directory or one of its parents; tfresp "
                                "never replaces it. Remedy: give a new directory such as runs/<name>")])
        held = [str(p) for p in protect if p and Path(p).exists() and _inside(Path(p).resolve(), real)]
        if held:
            raise ConfigError([("out", str(target), f"holds the run's own input ({', '.join(held)}); tfresp "
                                "never replaces it. Remedy: choose another --out")])
        empty = not any(target.iterdir())
        if not resume and not empty and not is_run_dir(target):
            if looks_like_old_run(target):
                raise ConfigError([("out", str(target), f"looks like a run of an older tfresp (report.json and "
                                    f"config.yaml, but no {MARKER} marker); tfresp cannot prove it wrote every "
                                    "file in it, so it never replaces it. Remedy: move it aside yourself (mv "
                                    f"OUT OUT.old), or, if you know it holds only that run, create OUT/{MARKER} "
                                    "and re-run with --overwrite; or choose another --out")])
            raise ConfigError([("out", str(target), f"already exists and is not a tfresp run directory (no {MARKER} "
                                "marker), so tfresp never replaces it. Remedy: choose another --out")])
        if not resume and not overwrite and not empty:
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


#: file placed in each directory tfresp creates only to hold a run's lock; removed with the directory
CREATED_MARK = ".tfresp-created"


def _missing_parents(target: Path) -> list:
    out = []
    p = target.parent
    while not p.exists():
        out.append(p)
        p = p.parent
    return out


@contextlib.contextmanager
def locked(target: Path):
    """Hold an exclusive lock on ``target`` for the whole run; a second run gets an error naming the first.

    The lock is ``flock`` on ``<parent>/.<name>.lock`` (released by the kernel if the process dies); the file
    is removed on exit. Parent directories created for it are removed again if the run leaves them empty.
    """
    import fcntl

    created = _missing_parents(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for d in created:  # whoever holds the lock last can tell these directories were made by tfresp
            with contextlib.suppress(OSError):
                (d / CREATED_MARK).touch()
    except OSError as exc:
        raise ConfigError([("out", str(target), f"cannot be written ({exc.strerror or exc.__class__.__name__} "
                            f"creating {target.parent})")]) from None
    path = target.parent / f".{target.name}.lock"
    fd = None
    try:
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    other = json.loads(os.read(fd, 4096) or b"{}")
                except ValueError:
                    other = {}
                os.close(fd)
                fd = None
                who = (f"pid {other.get('pid')} on {other.get('host')}, run {other.get('run_id')}, started "
                       f"{other.get('started')}") if other else "unknown"
                raise ConfigError([("out", str(target), f"is being written by another tfresp run ({who}); two "
                                    "runs must not share a run directory. Remedy: wait for it to finish or "
                                    "choose another --out")]) from None
            try:  # the file we locked must still be the one at `path` (a finishing run unlinks it)
                same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "run_id": uuid.uuid4().hex[:12],
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        yield info["run_id"]
    finally:
        if fd is not None:  # only the holder cleans up (a refused run must not touch the holder's directories)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.close(fd)
            _remove_created_parents(target.parent)


def _remove_created_parents(directory: Path) -> None:
    """Walk up from ``directory``: remove each directory tfresp created for a lock (it holds :data:`CREATED_MARK`)
    that is otherwise empty; where a run now lives, drop the mark and stop. The creator may have been another,
    refused run, hence the mark rather than a per-process list."""
    d, removing = directory, True
    while (d / CREATED_MARK).is_file():
        only_mark = {p.name for p in d.iterdir()} == {CREATED_MARK}
        with contextlib.suppress(OSError):
            (d / CREATED_MARK).unlink()
        if removing and only_mark:
            with contextlib.suppress(OSError):
                d.rmdir()
        else:
            removing = False  # a run lives here: keep this and every directory above, only drop their marks
        d = d.parent


def staging_dir(target: Path, run_id: str = "") -> Path:
    stage = target.parent / f".{target.name}.staging-{uuid.uuid4().hex[:8]}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        stage.mkdir()
        marker = {"run_id": run_id or uuid.uuid4().hex[:12], "written_by": "tfresp",
                  "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (stage / MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
    except OSError as exc:  # read-only or virtual file systems (/proc), full disks, root-squashed mounts
        shutil.rmtree(stage, ignore_errors=True)
        raise ConfigError([("out", str(target), f"cannot be written ({exc.strerror or exc.__class__.__name__} "
                            f"creating {stage})")]) from None
    return stage


def commit(stage: Path, target: Path, overwrite: bool) -> Path:
    """Move ``stage`` to ``target``; an old ``target`` is moved aside first and removed last."""
    old = None
    if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
        os.rmdir(target)  # an empty directory made for the run (checked before training) holds nothing to lose
    if target.exists() or target.is_symlink():
        if not overwrite or not is_run_dir(target):
            raise ConfigError([("out", str(target), "appeared during the run and is not a tfresp run directory; "
                                "nothing was overwritten. Remedy: choose another --out")])
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
    os.rename(stage, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def discard(stage: Path) -> None:
    shutil.rmtree(stage, ignore_errors=True)
