"""Small real models for the explanation tests (CPU, seconds)."""
import numpy as np
import pandas as pd
import pytest
import tf_keras as keras

from tests.conftest import TWEETS


@pytest.fixture(scope="session")
def tweets():
    if not TWEETS.exists():
        pytest.skip("../shared tweets not present")
    df = pd.read_csv(TWEETS, encoding_errors="replace").dropna(subset=["text"])
    df = df.groupby("sentiment", group_keys=False).apply(lambda g: g.sample(200, random_state=0))
    df = df.sample(frac=1.0, random_state=0).reset_index(drop=True)  # 600 tweets, 200 per class
    classes = sorted(df["sentiment"].unique())
    y = df["sentiment"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    return df["text"].astype(str).tolist(), y, classes


@pytest.fixture(scope="session")
def text_model(tweets):
    """TextVectorization + Embedding + pooling + Dense, trained 3 epochs on 600 shared tweets (balanced)."""
    texts, y, classes = tweets
    keras.utils.set_random_seed(0)
    vec = keras.layers.TextVectorization(max_tokens=3000, output_sequence_length=40, name="vectorize")
    vec.adapt(np.array(texts, dtype=object))
    inputs = keras.Input(shape=(), dtype="string", name="text")
    ids = vec(inputs)
    emb = keras.layers.Embedding(3000, 16, mask_zero=False, name="embedding")(ids)
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(emb)
    logits = keras.layers.Dense(len(classes), name="logits")(pooled)
    model = keras.Model(inputs, logits, name="tiny_text")
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(np.array(texts, dtype=object), y, epochs=3, batch_size=64, verbose=0)
    return model
