"""Evaluation: test-split metrics (the built-in concern that is always on)."""
from tfresp.evaluation.metrics import classification_metrics

__all__ = ["classification_metrics"]
