"""``tfresp.load(RUN)``: a finished run's served model, loaded with the ops it needs.

The SavedModel of a text run tokenizes raw strings inside the graph with ``tensorflow_text`` ops, which a
fresh ``tf.saved_model.load`` cannot find unless ``tensorflow_text`` was imported first. A plain
TensorFlow consumer (no tfresp installed) does::

    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (text runs only: registers the tokenizer ops)
    model = tf.saved_model.load("RUN/saved_model")
    probabilities = model.signatures["serving_default"](**inputs)["probabilities"]
"""
from __future__ import annotations

from pathlib import Path

from tfresp.errors import CheckpointError


def needs_tensorflow_text(run_dir) -> bool:
    """True when the run's SavedModel uses ``tensorflow_text`` ops (its config has ``data.text``)."""
    from tfresp.config import load_config

    return bool(load_config(Path(run_dir) / "config.yaml").data.text)


def load(run_dir):
    """Load the SavedModel a run serves (``RUN/saved_model``), importing the op libraries it needs.

    Args:
        run_dir: a finished tfresp run directory.

    Returns:
        The loaded SavedModel; ``.signatures["serving_default"]`` takes raw inputs and returns
        ``probabilities``.

    Example:
        >>> model = tfresp.load("runs/quickstart")
        >>> model.signatures["serving_default"](**{"age": tf.constant([39.0]), ...})["probabilities"]
    """
    root = Path(run_dir)
    path = root / "saved_model"
    if not (root / "config.yaml").is_file() or not (path / "saved_model.pb").is_file():
        raise CheckpointError(f"`run`: {str(root)!r} is not a finished tfresp run with a SavedModel (expected "
                              "config.yaml and saved_model/saved_model.pb). Received: run="
                              f"{str(run_dir)!r}. Remedy: fit with export.saved_model: true")
    if needs_tensorflow_text(root):
        try:
            import tensorflow_text  # noqa: F401  (registers the tokenizer ops the text SavedModel uses)
        except ModuleNotFoundError:
            raise CheckpointError("`run`: this text run's SavedModel needs the tensorflow-text package. Received: "
                                  f"run={str(run_dir)!r}. Remedy: pip install tensorflow-text") from None
    import tensorflow as tf

    return tf.saved_model.load(str(path))
