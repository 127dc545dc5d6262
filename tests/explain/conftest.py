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
    df = pd.concat([df[df["sentiment"] == c].sample(200, random_state=0) for c in sorted(df["sentiment"].unique())])
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


@pytest.fixture(scope="session")
def adult_run(tmp_path_factory):
    """One tiny Adult run with explanations on (IG and LIME), shared by the tabular tests."""
    import tfresp
    from tests.conftest import tiny_adult

    out = tmp_path_factory.mktemp("explain") / "run"
    cfg = tiny_adult(explain={"method": "both", "examples": 2, "num_samples": 200, "stability_seeds": 3,
                              "global_sample": 60, "misclassified_per_group": 1, "ig_steps": 4},
                     train={"epochs": 2, "batch_size": 128})
    return tfresp.fit(cfg, out=str(out), quiet=True)


class _Trained:
    def __init__(self, data, core):
        self.data, self.core = data, core


@pytest.fixture(scope="session")
def adult_model():
    """Adult data (3,000 rows, run preprocessing) and an MLP trained 2 epochs, without a full run."""
    from tests.conftest import tiny_adult
    from tfresp.config import load_config
    from tfresp.data.dataset import prepare
    from tfresp.models.mlp import build_mlp

    cfg = load_config(tiny_adult())
    data = prepare(cfg)
    keras.utils.set_random_seed(0)
    core = build_mlp(data.train.x.shape[1], data.num_classes, hidden=[16])
    core.compile(optimizer=keras.optimizers.Adam(1e-2),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    core.fit(data.train.x, data.train.y, epochs=2, batch_size=128, verbose=0)
    return _Trained(data, core)
