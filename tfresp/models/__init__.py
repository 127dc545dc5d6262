"""Model builders and the ``TfrespModel`` training wrapper."""
from tfresp.models.base import TfrespModel
from tfresp.models.registry import build_core, register_model

__all__ = ["TfrespModel", "build_core", "register_model"]
