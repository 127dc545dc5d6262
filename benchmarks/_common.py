"""Shared helpers for benchmark scripts: environment switches and JSON output."""
import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, **payload}
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path
