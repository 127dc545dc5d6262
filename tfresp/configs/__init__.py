"""The configs shipped with tfresp, usable by name: ``tfresp fit quickstart``, ``tfresp.fit("quickstart")``.

The repository's ``configs/*.yaml`` are the only copy in the source tree; building the wheel copies them into
``tfresp/configs/`` (``setup.py``), so an installed tfresp finds them from any directory. In a source checkout
(``pip install -e .`` or ``PYTHONPATH``) they are read from ``configs/`` beside the package.

``tfresp configs`` lists them. Configs whose ``data.source`` is a file path (the text ones) need that file; the
Adult and digits configs use data embedded in tfresp.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

_HERE = Path(__file__).resolve().parent
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def directory() -> Path:
    """The folder holding the shipped ``*.yaml`` (the package's in a wheel, ``configs/`` in a checkout)."""
    if any(_HERE.glob("*.yaml")):
        return _HERE
    return _HERE.parent.parent / "configs"


def names() -> list:
    """Names of the shipped configs, sorted (``quickstart``, ...)."""
    d = directory()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def path(name) -> Optional[Path]:
    """The shipped config called ``name`` (``quickstart`` or ``quickstart.yaml``), or None.

    Only a bare name is looked up: anything with a directory part is a path and never resolved here.
    """
    text = str(name)
    if not _NAME.match(text):
        return None
    stem = text[:-5] if text.endswith(".yaml") else text
    p = directory() / f"{stem}.yaml"
    return p if stem in names() else None


def summary(name) -> dict:
    """``{"name", "path", "description", "data"}`` of one shipped config (read from its comment and YAML)."""
    import yaml

    p = path(name)
    if p is None:
        raise KeyError(name)
    text = p.read_text(encoding="utf-8")
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    description = " ".join(lines)
    description = description.split(". ")[0].rstrip(".") if description else ""
    raw = yaml.safe_load(text) or {}
    source = str((raw.get("data") or {}).get("source", "adult"))
    is_file = "/" in source or source.endswith((".csv", ".gz", ".parquet", ".jsonl", ".json"))
    return {"name": p.stem, "path": str(p), "description": description,
            "data": f"needs {source}" if is_file else f"embedded ({source})"}
