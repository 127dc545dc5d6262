"""Run several ``tfresp`` command lines one after the other in this one process, each exactly as
``python -m tfresp.cli ARGS`` runs it (``sys.argv`` set, ``main()`` without arguments: the console-script path with
its stderr filter), so a test pays for one TensorFlow start-up instead of one per command line.

Usage: python _cli_many.py ROOT JSON_LIST_OF_ARGV. Prints one ``@@CLI@@`` JSON line: per command line the exit
code, everything written to file descriptor 2 while it ran, and the sorted names under ROOT before and after it.
"""
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

root, cases = Path(sys.argv[1]), json.loads(sys.argv[2])
from tfresp.cli import main  # noqa: E402

results = []
for argv in cases:
    before = sorted(p.name for p in root.rglob("*"))
    with tempfile.TemporaryFile() as err:  # outside ROOT: it is not part of the before/after listing
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(err.fileno(), 2)
        sys.argv = ["tfresp", *argv]
        try:
            code = main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # an escaped exception: what the interpreter would print, exit 1
            traceback.print_exc()
            code = 1
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    results.append({"code": code, "stderr": text, "before": before,
                    "after": sorted(p.name for p in root.rglob("*"))})
print("@@CLI@@" + json.dumps(results))
