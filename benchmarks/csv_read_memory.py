"""Peak resident memory and wall time of reading one CSV file (``sources.load_file``), in a fresh process.

    python benchmarks/csv_read_memory.py ROWS [--mixed]   # --mixed: one text value in a numeric column, late

The file is Adult-like (8 columns, ~40 bytes a row). ``--mixed`` puts ``unknown`` in the ``age`` column of a row
in the last chunk: before session 7's data review the chunked reader gave way to the whole-file reader for such a
column (the whole table as Python strings); now it reads the file again in chunks with that column as text.
"""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _hwm_mb() -> int:
    """The process's peak resident memory (VmHWM: reset by exec, unlike getrusage's ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return -1


def read(path: str):
    """Measure in this (fresh) process: the peak is the reader's, not the writer's."""
    from tfresp.data import sources

    base = _hwm_mb()
    t = time.perf_counter()
    frames, _ = sources.load_file(path)
    wall = time.perf_counter() - t
    peak = _hwm_mb()
    print(json.dumps({"wall_s": round(wall, 2), "peak_rss_mb": peak, "rss_before_read_mb": base,
                      "dtypes": {c: str(t) for c, t in frames["train"].dtypes.items()}}))


def main():
    if sys.argv[1] == "--read":
        return read(sys.argv[2])
    rows, mixed = int(sys.argv[1]), "--mixed" in sys.argv
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"age": rng.integers(17, 90, rows).astype(object),
                       "workclass": rng.choice(["Private", "Self-emp", "Gov", "?"], rows),
                       "fnlwgt": rng.integers(10000, 1000000, rows),
                       "education": rng.choice([f"ed{i}" for i in range(16)], rows),
                       "hours": rng.normal(40, 10, rows).round(1),
                       "country": rng.choice([f"c{i}" for i in range(40)], rows),
                       "sex": rng.choice(["Male", "Female"], rows), "income": rng.choice(["<=50K", ">50K"], rows)})
    if mixed:
        df.loc[rows - 10, "age"] = "unknown"
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "rows.csv"
        df.to_csv(path, index=False)
        del df
        out = subprocess.run([sys.executable, __file__, "--read", str(path)], capture_output=True, text=True,
                             check=True)
        result = {"rows": rows, "mixed": mixed, "file_mb": round(path.stat().st_size / 2**20, 1),
                  **json.loads(out.stdout.strip().splitlines()[-1])}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
