"""Small pieces shared by the model builders (BERT, its LoRA/adapters): here so neither imports the other."""
from __future__ import annotations

import tensorflow as tf


def gelu(x):
    """Exact (erf) GELU, as in BERT and transformers' ``gelu``."""
    return tf.nn.gelu(x, approximate=False)
