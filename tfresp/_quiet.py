"""Quiet stderr: TensorFlow/absl/sklearn noise filtered, real errors kept; ``--verbose`` (or ``TFRESP_VERBOSE=1``)
shows all.

The library is quiet inside its own calls, not only in the CLI: :func:`install_library_filters` drops
dp-accounting's "_compute_log_a_frac failed to converge" warnings (that RDP order is excluded from the epsilon
computation, which stays an upper bound) and TensorFlow's Python INFO/WARNING logs, but only for records logged
while a ``tfresp`` frame is on the call stack (a plain ``model.fit`` with a tfresp callback included);
:func:`library_call` also filters native stderr (TFLite's "Created TensorFlow Lite XNNPACK delegate") around
``tfresp.fit`` / ``audit`` / ``export`` / ``monitor``.

TensorFlow's C++ start-up lines (``cudart_stub``, ``cuInit``, oneDNN, the NodeDef
``use_unbounded_threadpool`` warning) are written to file descriptor 2 before absl logging is
initialised, so no environment variable hides them all. :func:`filter_native_stderr` routes fd 2 through
a pipe and a thread that drops those lines only; everything else (Python tracebacks, tfresp's own
``tfresp: error:`` line, fatal C++ errors) passes through unchanged.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import threading
import warnings

# C++ log lines at level I/W, and the E lines known to be harmless on a CPU-only or newer-TF machine.
_NOISE = re.compile(rb"^(WARNING: All log messages before absl::InitializeLog\(\)"
                    rb"|INFO: Created TensorFlow Lite XNNPACK delegate"
                    rb"|[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ "
                    rb"|E\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+\] (failed call to cuInit|NodeDef mentions attribute"
                    rb"|Unable to register cu))")

#: the user's own TF_CPP_MIN_LOG_LEVEL, read when tfresp is first imported (before tfresp sets its default);
#: the CLI goes quieter unless the user chose a level
USER_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
_native = threading.local()  # .active: fd 2 is being filtered (by the CLI or a library call)


def configure(verbose: bool) -> None:
    """Set TensorFlow/absl/Python log levels before TensorFlow is imported."""
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        os.environ["TFRESP_VERBOSE"] = "1"  # the library's call-scoped filters step aside too
        return
    if USER_TF_LOG_LEVEL is None:
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
    _native.active = True  # library calls inside (tfresp.fit from the CLI) do not stack a second filter

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
        _native.active = False

    return restore


def verbose_requested() -> bool:
    return os.environ.get("TFRESP_VERBOSE", "").strip().lower() in ("1", "true", "yes")


def _inside_tfresp(frame) -> bool:
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name == "tfresp" or (name.startswith("tfresp.") and name != __name__):
            return True
        frame = frame.f_back
    return False


class _TfrespCallNoise(logging.Filter):
    """Drops INFO/WARNING records of ``absl``/``tensorflow`` logged from inside a tfresp call (errors pass)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR or verbose_requested():
            return True
        return not _inside_tfresp(sys._getframe(1))


_FILTER = _TfrespCallNoise()


def install_library_filters() -> None:
    """Attach the call-scoped filter to the ``absl`` and ``tensorflow`` loggers (idempotent)."""
    try:
        from absl import logging as absl_logging

        loggers = [absl_logging.get_absl_logger(), logging.getLogger("tensorflow")]
    except ImportError:  # absl comes with TensorFlow; without it there is nothing to filter
        loggers = [logging.getLogger("tensorflow")]
    for logger in loggers:
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)




@contextlib.contextmanager
def native_quiet():
    """Filter native stderr (fd 2) for the block unless verbose, nested or already filtered by the CLI."""
    if verbose_requested() or getattr(_native, "active", False) or threading.current_thread() is not \
            threading.main_thread():
        yield
        return
    restore = filter_native_stderr()
    try:
        yield
    finally:
        restore()


def library_call(fn):
    """Decorator for tfresp's public entry points: call-scoped log filters and native stderr filtering."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        install_library_filters()
        with native_quiet():
            return fn(*args, **kwargs)

    return wrapper


def progress(quiet: bool, message: str) -> None:
    """One ``tfresp: <phase> ...`` line on stderr (phases after training: audits, export, report)."""
    if not quiet:
        print(f"tfresp: {message}", file=sys.stderr, flush=True)
