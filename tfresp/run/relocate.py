"""Find a finished run's data files again, wherever the run directory and the caller now are.

At fit time :func:`locations` records, for the data source and a separate test file (``data.split.test``),
the path as given, the absolute path and the path relative to the run directory (a run moved together with
its data keeps working), and the plain sha256 of the test file (the test split is not covered by a DP
guarantee and is what ``tfresp verify`` evaluates on; a DP run's training file gets no plain digest here).

``tfresp audit`` / ``explain`` / ``verify`` call :func:`locate`: each file is looked for as the config gives it
(relative to the current directory; a changed file there is refused, not skipped), then at its recorded
absolute path, then relative to the run directory where it is now; a file whose recorded sha256 differs is never
used. When nothing is found the command stops with
one line asking for ``--data``.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Optional

from tfresp.errors import DataError

#: sources that are not files (nothing to locate)
_NOT_FILES = ("adult", "memory")


def _is_file_source(source) -> bool:
    s = str(source)
    return s not in _NOT_FILES and not s.startswith(("digits:", "tfds:")) and s != "digits"


def test_file_of(config) -> Optional[str]:
    """The separate test file of a config (``data.split.test`` as a path), else None."""
    test = config.data.split.test
    return test if isinstance(test, str) and test != "official" else None


def _entry(given: str, target: Path, digest: bool) -> dict:
    from tfresp.data.stream import sha256_file

    path = Path(given).expanduser().resolve()
    out = {"given": given, "absolute": str(path)}
    try:
        out["relative_to_run"] = os.path.relpath(path, Path(target).resolve())
    except ValueError:  # another drive (Windows)
        out["relative_to_run"] = None
    if digest and path.is_file():
        out["sha256"] = sha256_file(path)
    return out


def locations(config, target) -> Optional[dict]:
    """``{"source": {...}, "test": {...}}`` for the run written to ``target`` (None without data files)."""
    out = {}
    if _is_file_source(config.data.source):
        # a DP run's training file: no plain digest of private rows here (tfresp/run/run_data.py checks the source)
        fed = getattr(config, "federated", None)
        private = config.privacy is not None or getattr(fed, "dp", None) is not None
        out["source"] = _entry(config.data.source, target, digest=not private)
    test = test_file_of(config)
    if test is not None:
        out["test"] = _entry(test, target, digest=True)
    return out or None


def test_role(config) -> Optional[str]:
    """Which file holds the run's test rows: ``"test"`` (data.split.test), ``"source"`` (a seeded part of the
    source file) or None (built-in or in-memory data)."""
    if test_file_of(config) is not None:
        return "test"
    return "source" if _is_file_source(config.data.source) else None


def locate(run_dir, config, report: dict, *, source: Optional[str] = None, test: Optional[str] = None,
           option: str = "--data"):
    """A copy of ``config`` whose data paths point at files that exist (see the module docstring).

    ``source`` / ``test``: files the user passed (``--data``); checked against the recorded sha256 when one is
    recorded. Raises :class:`DataError` (one line, naming ``option``) when a file cannot be found or differs.
    """
    run_dir = Path(run_dir)
    recorded = ((report.get("data") or {}).get("locations") or {})
    config = copy.deepcopy(config)
    if _is_file_source(config.data.source):
        config.data.source = _find("source", "data.source", config.data.source, recorded.get("source"), run_dir,
                                   source, option)
    elif source is not None:
        raise DataError(f"`{option}`: this run's data is {config.data.source!r} (not a file), so there is no file "
                        f"to give. Received: {option}={source!r}. Remedy: leave out {option}")
    given_test = test_file_of(config)
    if given_test is not None:
        config.data.split.test = _find("test", "data.split.test", given_test, recorded.get("test"), run_dir, test,
                                       option)
    elif test is not None:
        raise DataError(f"`{option}`: this run has no separate test file (data.split.test is "
                        f"{config.data.split.test!r}). Received: {option}={test!r}. Remedy: leave out {option}")
    return config


def _find(role, field, given, rec, run_dir: Path, override, option) -> str:
    from tfresp.data.stream import sha256_file

    rec = rec if isinstance(rec, dict) else {}
    want = rec.get("sha256")
    if override is not None:
        path = Path(override).expanduser()
        if not path.is_file():
            raise DataError(f"`{option}`: file not found. Received: {option}={override!r}. Remedy: give the run's "
                            f"{'test' if role == 'test' else 'data'} file ({Path(given).name})")
        if want and sha256_file(path) != want:
            raise DataError(f"`{option}`: {override!r} is not the file this run was evaluated on: its sha256 "
                            f"differs from the one recorded in report.json for {field} ({Path(given).name}, sha256 "
                            f"{want[:16]}...). Remedy: give the run's own {role} file; numbers on other rows are not "
                            "the run's")
        return str(path.resolve())
    g = Path(given).expanduser()
    first = g if g.is_absolute() else Path.cwd() / g
    if first.is_file():  # the path as the config gives it: used as is; a changed file is refused, never skipped
        if want and sha256_file(first) != want:
            raise DataError(f"`{field}`: the file {given!r} differs from the one the run used (sha256 recorded in "
                            f"report.json {want[:16]}...); its numbers would not be the run's. Received: "
                            f"{field}={given!r}. Remedy: restore the original file, or pass {option} PATH to it")
        return str(first.resolve())
    tried, differ = [str(first)], []
    candidates = []
    if rec.get("absolute"):
        candidates.append(Path(rec["absolute"]))
    if rec.get("relative_to_run"):
        candidates.append(run_dir / rec["relative_to_run"])
    if not g.is_absolute():
        candidates.append(run_dir / g)
    for c in candidates:
        if str(c) in tried:
            continue
        tried.append(str(c))
        if c.is_file():
            if want and sha256_file(c) != want:
                differ.append(str(c))
                continue
            return str(c.resolve())
    what = f" ({', '.join(differ)} differ{'s' if len(differ) == 1 else ''} from the recorded sha256)" if differ else ""
    raise DataError(f"`{option}`: the run's {'test' if role == 'test' else 'data'} file {Path(given).name!r} "
                    f"({field}) was not found{what}; looked at: {', '.join(tried)}. Remedy: pass {option} PATH to "
                    "that file")
