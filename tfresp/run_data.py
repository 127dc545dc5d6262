"""The data a finished run was trained on: re-read only if it is byte-for-byte what the run recorded.

``tfresp audit`` / ``export`` / ``explain`` re-prepare a run's splits from its ``config.yaml``. If the file
changed since the run, they would evaluate on other rows and overwrite the run's report with numbers
that are not the run's: the sha256 recorded in ``report.json`` (``data.source.files``) is checked first.
In-memory (DataFrame) runs keep no copy of their rows (they may be private): the same frame is passed
from Python (``tfresp.audit(run_dir, data=df)``) and its digest is checked the same way.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from tfresp.errors import DataError


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _changed(run_dir, what: str) -> DataError:
    return DataError(f"`data.source`: {what} differs from the data the run was trained on (sha256 recorded in "
                     f"report.json); its numbers would not be the run's. Received: run={str(run_dir)!r}. Remedy: "
                     "restore the original data, or run `tfresp fit` again on the new data")


def verify_source(run_dir, config, report: dict, memory=None) -> None:
    """Before re-preparing a run's data: refuse a changed file, or an in-memory run without its frame."""
    from tfresp.io import is_regular_file

    recorded = ((report.get("data") or {}).get("source") or {}).get("files") or {}
    source = config.data.source
    if source == "memory" or memory is not None:
        if memory is None:
            raise DataError(f"`RUN`: this run was trained on in-memory data (a DataFrame), whose rows are not "
                            f"saved with the run. Received: run={str(run_dir)!r}. Remedy: from Python pass the "
                            "same frame, e.g. tfresp.audit(RUN, data=df) or tfresp.export(RUN, ['int8'], data=df)")
        from tfresp.data.sources import load_memory

        digest = load_memory(memory)[1]["files"]["memory"]
        if recorded.get("memory") not in (None, digest):
            raise _changed(run_dir, "the `data` frame passed")
        return
    path = Path(source).expanduser()
    name = path.name
    if name in recorded and path.exists():
        if not is_regular_file(path):
            raise DataError(f"`data.source`: is not a regular file. Received: source={source!r}. Remedy: give the "
                            "run's data file")
        if _file_sha256(path) != recorded[name]:
            raise _changed(run_dir, f"the file {source!r}")


def check_prepared(run_dir, data, report: dict) -> None:
    """After re-preparing: every source digest (built-in data sets too) must equal the recorded one."""
    recorded = ((report.get("data") or {}).get("source") or {}).get("files") or {}
    now = (getattr(data, "info", None) or {}).get("files") or {}
    differ = sorted(k for k in recorded if k in now and now[k] != recorded[k])
    if differ:
        raise _changed(run_dir, f"the source {differ}")
