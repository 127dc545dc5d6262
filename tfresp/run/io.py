"""Safe file writes for every tfresp command: atomic, never through a symbolic link, never over a user's file.

``atomic_write`` writes a temporary file opened with ``O_EXCL | O_NOFOLLOW`` in the destination's own
directory and ``os.replace``-s it into place, so a reader sees the old file or the new one, never half of
one, and a symlink planted at the destination is refused instead of followed. ``check_writable`` runs the
same checks for a whole set of files *before* a command does any work, so a refusal changes nothing.
The standard library has the primitives but no helper combining them (``tempfile.NamedTemporaryFile``
follows no links but cannot refuse one at the destination), hence this small module.
"""
from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path
from typing import Iterable, Optional

from tfresp.errors import DataError


def _refuse(field: str, path: Path, what: str, remedy: str) -> DataError:
    return DataError(f"`{field}`: {what}. Received: {field}={str(path)!r}. Remedy: {remedy}")


def check_writable(paths: Iterable[Path], field: str, owned_marker: Optional[str] = None) -> None:
    """Refuse (before any write) a destination that is a symlink, not a regular file, or a user's file.

    Args:
        paths: files about to be written.
        field: the argument named in the error (``--out``, ``RUN``).
        owned_marker: when given, an existing file must contain this text (tfresp writes it into every file
            of that kind), otherwise it is a user's file and is not overwritten.
    """
    for path in map(Path, paths):
        if path.parent.is_symlink():
            raise _refuse(field, path.parent, "is a symbolic link; tfresp does not write through links",
                          "give the real directory")
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise _refuse(field, path, "is a symbolic link; tfresp does not write through links",
                          "remove the link or choose another directory")
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(field, path, "exists and is not a regular file", "choose another directory")
        if owned_marker is not None:
            with open(path, "rb") as fh:
                head = fh.read(4096)
            if owned_marker.encode() not in head:
                raise _refuse(field, path, "exists and was not written by tfresp; it is not overwritten",
                              "move it away or choose another --out")


def atomic_write(path: Path, data, mode: int = 0o644) -> None:
    """Write ``data`` (str or bytes) to ``path`` atomically; refuse a symlink at ``path``."""
    path = Path(path)
    check_writable([path], "path")
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def is_read_only_error(exc: OSError) -> bool:
    """True for the errors a read-only mount or missing write permission gives."""
    import errno

    return exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)


def refuse_read_only_rerender(exc: OSError, run_dir, check_command: str):
    """Re-raise ``exc``, or the one message for a report that could not be re-rendered on a read-only run dir."""
    from tfresp.errors import DataError

    if not is_read_only_error(exc):
        raise exc
    raise DataError(f"`run`: the run directory is read-only ({exc.strerror}); the report was not re-rendered. "
                    f"Received: run={str(run_dir)!r}. Remedy: use `{check_command}` (reads only) or copy the run to "
                    "a writable place") from None


def probe_writable(directory) -> bool:
    """True when a file can be created in ``directory`` (tried and undone: ``os.access`` says yes to root even
    on a read-only mount); False on a read-only mount or missing permission."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(prefix=".tfresp-probe-", dir=directory)
    except OSError as exc:
        if is_read_only_error(exc):
            return False
        raise
    os.close(fd)
    os.unlink(probe)
    return True


def is_regular_file(path) -> bool:
    """True when ``path`` is a regular file (a named pipe or ``/dev/zero`` would block or never end)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
