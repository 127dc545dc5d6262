"""The tfresp error hierarchy.

Every error a user can cause is a :class:`TfrespError`; the CLI prints it as one line
and exits with its ``exit_code`` (2 for bad input, 1 for a failed gate).
"""
import reprlib


class TfrespError(Exception):
    """Base class of errors caused by the user's input or a policy (not a bug)."""

    exit_code = 2


class ConfigError(TfrespError):
    """The config has one or more invalid fields.

    Args:
        problems: list of ``(field_path, received_value, expected)`` tuples.
    """

    def __init__(self, problems):
        if isinstance(problems, str):
            problems = [("config", None, problems)]
        self.problems = list(problems)
        parts = []
        for path, value, expected in self.problems:
            shown = "" if value is _MISSING else f" Received: {path.split('.')[-1] if path else 'value'}={_short(value)}."
            parts.append(f"`{path}`: {expected}.{shown}")
        super().__init__("Invalid config: " + " | ".join(parts))


def _short(value, limit: int = 200) -> str:
    """``repr(value)`` cut to ``limit`` characters (a hostile config must not make a megabyte message)."""
    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlist, r.maxdict, r.maxlevel = limit, limit, 8, 8, 3
    text = r.repr(value)
    return text if len(text) <= limit else text[:limit] + "...(truncated)"


class _Missing:
    def __repr__(self):
        return "<missing>"


_MISSING = _Missing()
ConfigError.MISSING = _MISSING


class DataError(TfrespError):
    """The data cannot be used as configured (missing column, NaN, empty file, ...)."""


class IncompatibleModelError(TfrespError):
    """A model cannot be used with a requested concern; the message names the layer and a remedy."""


class BudgetExhaustedError(TfrespError):
    """A privacy budget does not allow what was asked."""


class TrainingDivergedError(TfrespError):
    """The training loss became NaN or infinite; the run stops and its checkpoints are discarded."""

    discard_checkpoints = True


class CheckpointError(TfrespError):
    """A checkpoint is missing, corrupted or incompatible with the run."""


class GateFailedError(TfrespError):
    """One or more release gates failed."""

    exit_code = 1
