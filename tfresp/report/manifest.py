"""The run's manifest: the sha256 of every artifact, recorded in report.json at fit time.

``tfresp verify`` hashes the files again: one changed byte of the SavedModel, a swapped TFLite file or an
edited ``preprocessing/tabular.json`` is named. report.md / report.html and the plots they draw
(``plots/report_*``) are rendered from report.json (which holds the manifest) and are not listed; checkpoints
(resumption state) and TensorBoard logs are not evidence
and are left out too. Commands that legitimately rewrite an artifact of a finished run (``tfresp audit`` redraws
plots, ``tfresp export`` writes TFLite files) record the new digests with :func:`refresh`.

Example:
    >>> report["manifest"] = build(run_dir)
    >>> problems = check(run_dir, report["manifest"])   # [] when every listed file is as recorded
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, List

from tfresp.data.stream import sha256_file

#: derived from report.json, or not evidence: never listed
EXCLUDED_FILES = ("report.json", "report.md", "report.html", ".tfresp-run", "signature.json")
#: private/ holds the owner's key of a DP run's keyed data fingerprints (never shared, tfresp/privacy/releases.py)
EXCLUDED_DIRS = ("checkpoints", "tensorboard", "private")
#: drawn by the report renderer from report.json's numbers on every re-render (tfresp/report/html.py)
DERIVED_PREFIX = "plots/report_"


def _listed(run_dir: Path) -> List[str]:
    out = []
    for root, dirs, files in os.walk(run_dir, followlinks=False):
        rel_root = Path(root).relative_to(run_dir)
        if rel_root == Path("."):
            dirs[:] = [d for d in dirs if d not in EXCLUDED_DIRS]
        for name in files:
            rel = (rel_root / name).as_posix()
            if rel in EXCLUDED_FILES or rel.startswith(DERIVED_PREFIX) or ".tmp" in name:
                continue
            if (Path(root) / name).is_symlink():
                continue
            out.append(rel)
    return sorted(out)


def build(run_dir) -> dict:
    """``{"algorithm": "sha256", "files": {relative path: digest}, "excluded": [...]}`` of a run directory."""
    run_dir = Path(run_dir)
    return {"algorithm": "sha256", "files": {rel: sha256_file(run_dir / rel) for rel in _listed(run_dir)},
            "excluded": list(EXCLUDED_FILES) + [d + "/" for d in EXCLUDED_DIRS] + [DERIVED_PREFIX + "*"]}


def refresh(report: dict, run_dir, paths: Iterable[str]) -> None:
    """Record the current digests of ``paths`` (relative; a folder means every file under it) that tfresp
    itself just rewrote in a finished run. A run without a manifest (older tfresp) is left without one."""
    manifest = report.get("manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return
    run_dir = Path(run_dir)
    files = manifest["files"]
    for rel in _listed(run_dir):
        if any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in paths):
            files[rel] = sha256_file(run_dir / rel)
    for rel in [r for r in files if any(r == p or r.startswith(p.rstrip("/") + "/") for p in paths)]:
        if not (run_dir / rel).is_file():
            del files[rel]
    manifest["files"] = dict(sorted(files.items()))


def check(run_dir, manifest) -> tuple:
    """``(checked, problems, unlisted)``: every listed file hashed again (missing and changed files are problems);
    ``unlisted``: files added after the run (e.g. ``tfresp monitor`` outputs), named but not evidence."""
    run_dir = Path(run_dir)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return 0, [], None  # no manifest (tfresp before manifests, or deleted): the caller says so
    problems, checked = [], 0
    for rel, digest in manifest["files"].items():
        checked += 1
        path = run_dir / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            problems.append(f"`manifest.files`: {rel!r} is not a path inside the run")
        elif not path.is_file() or path.is_symlink():
            problems.append(f"`manifest.files.{rel}`: the artifact is missing (or not a regular file) in the run "
                            "directory. Remedy: restore it from the original run")
        elif sha256_file(path) != digest:
            problems.append(f"`manifest.files.{rel}`: the file changed since the run (sha256 recorded "
                            f"{digest[:16]}..., now {sha256_file(path)[:16]}...). Remedy: restore the original "
                            "artifact; a changed model is not the model the report describes")
    unlisted = [rel for rel in _listed(run_dir) if rel not in manifest["files"]]
    return checked, problems, unlisted


def record(run_dir, manifest, found) -> bool:
    """:func:`check` into ``found`` (``tfresp verify``'s findings: ``checked``, ``mismatches``, ``notes``), for
    central and cross-silo runs alike. Returns False when the report has no manifest: the caller says what that
    means for its kind of run."""
    checked, problems, unlisted = check(run_dir, manifest)
    if unlisted is None:
        return False
    found.checked += checked
    found.mismatches.extend(problems)
    if unlisted:
        found.notes.append(f"files added after the run (not in the manifest, not evidence): {unlisted}")
    return True
