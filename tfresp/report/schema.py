"""The JSON Schema of report.json (``tfresp/report/schema.json``) and a validator.

Example:
    >>> problems = validate(json.load(open("runs/quickstart/report.json")))
    >>> assert not problems, problems
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The report schema as a dict (shipped as package data)."""
    return json.loads(resources.files("tfresp.report").joinpath("schema.json").read_text(encoding="utf-8"))


def validate(report: dict) -> list:
    """Schema problems of ``report`` as ``"<json.path>: <message>"`` strings (empty when valid).

    Raises:
        ModuleNotFoundError: when ``jsonschema`` (a ``dev`` extra) is not installed.
    """
    import jsonschema

    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for err in sorted(validator.iter_errors(report), key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(str(p) for p in err.absolute_path) or "<root>"
        out.append(f"{path}: {err.message[:300]}")
    return out
