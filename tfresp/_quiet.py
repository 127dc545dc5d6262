"""Quiet stderr for the CLI: TensorFlow/absl/sklearn noise filtered, real errors kept; ``--verbose`` shows all.

TensorFlow's C++ start-up lines (``cudart_stub``, ``cuInit``, oneDNN, the NodeDef
``use_unbounded_threadpool`` warning) are written to file descriptor 2 before absl logging is
initialised, so no environment variable hides them all. :func:`filter_native_stderr` routes fd 2 through
a pipe and a thread that drops those lines only; everything else (Python tracebacks, tfresp's own
``tfresp: error:`` line, fatal C++ errors) passes through unchanged.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import threading
import warnings

# C++ log lines at level I/W, and the E lines known to be harmless on a CPU-only or newer-TF machine.
_NOISE = re.compile(rb"^(WARNING: All log messages before absl::InitializeLog\(\)"
                    rb"|[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ "
                    rb"|E\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+\] (failed call to cuInit|NodeDef mentions attribute"
                    rb"|Unable to register cu))")


def configure(verbose: bool) -> None:
    """Set TensorFlow/absl/Python log levels before TensorFlow is imported."""
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    import tfresp

    if tfresp._USER_TF_LOG_LEVEL is None:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    for module in ("sklearn", "pandas", "tensorflow", "tf_keras", "keras", "shap", "fairlearn", "absl"):
        warnings.filterwarnings("ignore", module=module)


def filter_native_stderr():
    """Route fd 2 through a line filter; returns a function restoring it (call it before exiting)."""
    try:
        real = os.dup(2)
        keep = os.dup(2)
        r, w = os.pipe()
    except OSError:
        return lambda: None
    os.dup2(w, 2)
    os.close(w)

    def pump():
        with os.fdopen(r, "rb") as src, os.fdopen(real, "wb", buffering=0) as dst:
            for line in src:
                if not _NOISE.match(line):
                    dst.write(line)

    thread = threading.Thread(target=pump, name="tfresp-stderr-filter", daemon=True)
    thread.start()

    def restore():
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(keep, 2)  # closes the pipe's last write end: the pump drains it and stops
        os.close(keep)
        thread.join(timeout=5)

    return restore
