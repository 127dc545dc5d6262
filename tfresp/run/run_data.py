"""The data a finished run was trained on: re-read only if it is byte-for-byte what the run recorded.

``tfresp audit`` / ``export`` / ``explain`` re-prepare a run's splits from its ``config.yaml``. If the file
changed since the run, they would evaluate on other rows and overwrite the run's report with numbers
that are not the run's: the sha256 recorded in ``report.json`` (``data.source.files``) is checked first.
In-memory (DataFrame) runs keep no copy of their rows (they may be private): the same frame is passed
from Python (``tfresp.audit(run_dir, data=df)``) and its digest is checked the same way.

Under DP the report records keyed fingerprints (``hmac-sha256:...``, :mod:`tfresp.privacy.releases`): the key
is read from the run's owner-only ``private/data_key.json``; without it the data cannot be confirmed and the
command refuses. :func:`file_matches_run` answers "is this file the run's recorded train/test file".
"""
from __future__ import annotations

import hmac
from pathlib import Path
from typing import Optional

from tfresp.data.stream import sha256_file
from tfresp.errors import DataError


def _key_missing(run_dir) -> DataError:
    from tfresp.privacy.releases import KEY_FILE

    return DataError(f"`RUN`: this DP run records keyed data fingerprints and its key file {KEY_FILE} (owner-only, "
                     f"not part of a shared run) is missing, so the data cannot be confirmed to be the run's. "
                     f"Received: run={str(run_dir)!r}. Remedy: run the command on the owner's copy of the run "
                     "(with its private/ folder)")


def digest_matches(run_dir, recorded: str, sha256_hex: str) -> bool:
    """Does a recorded digest (plain sha256, or ``hmac-sha256:...`` under DP) describe content whose plain sha256
    is ``sha256_hex``? A keyed one needs the run's key file (:class:`DataError` when it is missing)."""
    from tfresp.privacy.releases import PREFIX, keyed, read_key

    if not str(recorded).startswith(PREFIX):
        return recorded == sha256_hex
    key = read_key(Path(run_dir))
    if key is None:
        raise _key_missing(run_dir)
    return hmac.compare_digest(keyed(key, sha256_hex), recorded)


def file_matches_run(run_dir, path, split: str = "train", report: Optional[dict] = None) -> bool:
    """True when the file at ``path`` is byte for byte the run's recorded ``split`` file.

    ``split="train"``: one of the source files (``data.source.files``; keyed under DP). ``split="test"``: the
    separate test file (``data.source.test_file``, plain sha256: test rows are not covered by DP), else, for a
    source that carries its own test split (e.g. the embedded Adult data), one of the source files. False when
    the run recorded no digest for that split.
    """
    if split not in ("train", "test"):
        raise ValueError(f"`split`: 'train' or 'test'. Received: {split!r}")
    if report is None:
        from tfresp.report.compare import load_report

        report = load_report(run_dir)
    source = (report.get("data") or {}).get("source") or {}
    recorded = dict(source.get("files") or {})
    if split == "test" and isinstance(source.get("test_file"), dict):
        recorded = dict(source["test_file"].get("files") or {})
    if not recorded:
        return False
    digest = sha256_file(Path(path))
    return any(digest_matches(run_dir, r, digest) for r in recorded.values())


def _changed(run_dir, what: str) -> DataError:
    return DataError(f"`data.source`: {what} differs from the data the run was trained on (sha256 recorded in "
                     f"report.json); its numbers would not be the run's. Received: run={str(run_dir)!r}. Remedy: "
                     "restore the original data, or run `tfresp fit` again on the new data")


def verify_source(run_dir, config, report: dict, memory=None) -> None:
    """Before re-preparing a run's data: refuse a changed file, or an in-memory run without its frame."""
    from tfresp.run.io import is_regular_file

    fed = getattr(config, "federated", None)
    if fed is not None and getattr(fed, "sites", None):
        raise DataError(f"`federated.sites`: this is a sites run: its rows stay at the sites, and no command re-reads "
                        f"them centrally. Received: run={str(run_dir)!r}. Remedy: use the run's report.json (its "
                        "federated section holds the per-site and pooled evaluation), or fit again")
    recorded = ((report.get("data") or {}).get("source") or {}).get("files") or {}
    source = config.data.source
    if source == "memory" or memory is not None:
        if memory is None:
            raise DataError(f"`RUN`: this run was trained on in-memory data (a DataFrame), whose rows are not "
                            f"saved with the run. Received: run={str(run_dir)!r}. Remedy: from Python pass the "
                            "same frame, e.g. tfresp.audit(RUN, data=df) or tfresp.export(RUN, ['int8'], data=df)")
        from tfresp.data.sources import load_memory

        digest = load_memory(memory)[1]["files"]["memory"]
        if recorded.get("memory") is not None and not digest_matches(run_dir, recorded["memory"], digest):
            raise _changed(run_dir, "the `data` frame passed")
        return
    path = Path(source).expanduser()
    name = path.name
    if name in recorded and path.exists():
        if not is_regular_file(path):
            raise DataError(f"`data.source`: is not a regular file. Received: source={source!r}. Remedy: give the "
                            "run's data file")
        if not digest_matches(run_dir, recorded[name], sha256_file(path)):
            raise _changed(run_dir, f"the file {source!r}")


def check_prepared(run_dir, data, report: dict) -> None:
    """After re-preparing: every source digest (built-in data sets too) must equal the recorded one."""
    recorded = ((report.get("data") or {}).get("source") or {}).get("files") or {}
    now = (getattr(data, "info", None) or {}).get("files") or {}
    differ = sorted(k for k in recorded if k in now and not digest_matches(run_dir, recorded[k], now[k]))
    if differ:
        raise _changed(run_dir, f"the source {differ}")
