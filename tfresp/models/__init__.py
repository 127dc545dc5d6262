"""Model builders and the ``ResponsibleModel`` training wrapper."""
from tfresp.models.base import ResponsibleModel
from tfresp.models.registry import build_core, register_model

__all__ = ["ResponsibleModel", "build_core", "register_model"]
