"""Tabular multilayer perceptron (functional Keras, so DP fast clipping and tfmot pruning apply)."""
import tf_keras as keras


def build_mlp(input_dim: int, num_classes: int, hidden=(64, 32), dropout: float = 0.0,
              activation: str = "relu", name: str = "mlp") -> keras.Model:
    """Dense stack ending in ``num_classes`` logits.

    Example:
        >>> core = build_mlp(108, 2, hidden=[64, 32])
    """
    inputs = keras.Input(shape=(input_dim,), name="features")
    x = inputs
    for i, width in enumerate(hidden):
        x = keras.layers.Dense(width, activation=activation, name=f"dense_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, logits, name=name)
