"""Regenerate notebooks/*.ipynb (outputs stripped) from this file: python notebooks/make_notebooks.py."""
from pathlib import Path

import nbformat as nbf

def md(s): return nbf.v4.new_markdown_cell(s.strip("\n"))
def code(s, tags=None):
    c = nbf.v4.new_code_cell(s.strip("\n"))
    if tags: c.metadata["tags"] = tags
    return c

FIND_ROOT = '''
import os
from pathlib import Path

# Run from the repository root (where configs/ and ../shared are), whether the notebook was opened from
# notebooks/ or from the root.
if Path.cwd().name == "notebooks":
    os.chdir(Path.cwd().parent)
print("working directory:", Path.cwd())
'''

# ---------------------------------------------------------------- quickstart
q = nbf.v4.new_notebook()
q.metadata.update({"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}})
q.cells = [
md('''
# tfresp quickstart: Adult census income, private and audited for fairness

One call trains an MLP on the UCI Adult data (embedded in tfresp, CC BY 4.0) with **DP-SGD** (calibrated to a
target ε, Poisson sampling, PLD accounting) and a **fairness audit** by sex and race (group metrics with bootstrap
confidence intervals), exports a SavedModel and writes an audit-ready report (`report.json`, `report.md`,
`report.html`). Every number shown below is read from that run's report.

The next cell holds the parameters (tests run this notebook headless with tiny values).
'''),
code('''
MAX_ROWS = None          # None: all 32,561 training rows; e.g. 2000 for a quick look
EPOCHS = 5
BATCH_SIZE = 256
TARGET_EPSILON = 3.0     # privacy budget (delta: auto = largest power of ten below 1/n)
BOOTSTRAP = 200          # bootstrap resamples for the fairness confidence intervals
MIA_AUDIT = True         # membership-inference audit of the trained model
EXPORT = True            # SavedModel export
OUT = "runs/quickstart-notebook"
''', tags=["parameters"]),
code(FIND_ROOT),
code('''
import tfresp

config = {
    "name": "adult-quickstart-notebook",
    "seed": 0,
    "data": {"source": "adult", "label": "income", "sensitive": ["sex", "race"], "max_rows": MAX_ROWS,
             "split": {"test": "official", "validation": 0.1}},
    "model": {"kind": "mlp", "hidden": [64, 32]},
    "train": {"epochs": EPOCHS, "batch_size": BATCH_SIZE, "learning_rate": 0.003},
    "privacy": {"target_epsilon": TARGET_EPSILON, "delta": "auto", "l2_norm_clip": 1.0, "sampling": "poisson",
                "audit": MIA_AUDIT},
    "fairness": {"sensitive": ["sex", "race"], "constraint": "equalized_odds", "bootstrap": BOOTSTRAP},
    "export": {"saved_model": EXPORT},
    "report": {"intended_use": "Demonstration of responsible-training evidence on a public benchmark.",
               "out_of_scope": "Any decision about real individuals.",
               "limitations": "1994 US census data; labels reflect historical income disparities."},
}
result = tfresp.fit(config, out=OUT, overwrite=True, quiet=True)
print("run directory:", result.run_dir)
'''),
md('''## Test-set performance'''),
code('''
ev = result.report["evaluation"]["test"]
for k in ("accuracy", "precision", "recall", "f1", "roc_auc"):
    print(f"{k:>10}: {ev[k]:.4f}")
'''),
md('''## Privacy'''),
code('''
priv = result.report["privacy"]
print(f"epsilon = {priv['epsilon']:.3f} at delta = {priv['delta']:.1e} "
      f"(noise multiplier {priv['noise_multiplier']:.3f}, {priv['steps']} steps, sampling rate {priv['sampling_rate']:.4f})")
if priv.get("audit"):
    print("membership-inference AUC:", priv["audit"].get("mia_auc"))
print()
print(priv["statement"])
'''),
md('''## Fairness (test split, with bootstrap confidence intervals)'''),
code('''
fair = result.report["fairness"]
for attr in ("sex", "race"):
    sec = fair.get(attr) or {}
    for metric in ("demographic_parity_difference", "equalized_odds_difference"):
        if metric in sec:
            ci = sec.get(metric + "_ci")
            print(f"{attr:>5} {metric}: {sec[metric]:.4f}  CI {ci}")
'''),
md('''## The report

`report.md` is a Hugging Face model card (YAML header + sections); `report.html` is self-contained.'''),
code('''
from IPython.display import Markdown, display

display(Markdown((result.run_dir / "report.md").read_text()[:6000]))
print(sorted(p.name for p in result.run_dir.iterdir()))
'''),
]

# ---------------------------------------------------------------- colab TPU fine-tune
t = nbf.v4.new_notebook()
t.metadata.update({"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}, "accelerator": "TPU"})
t.cells = [
md('''
# Fine-tune MiniLM on tweet sentiment under `TPUStrategy` (Colab TPU), or on CPU/GPU elsewhere

On a Colab **TPU runtime** (Runtime → Change runtime type → TPU; current Colab TPUs are *TPU VMs*, found with
`TPUClusterResolver(tpu="local")`) tfresp trains under `tf.distribute.TPUStrategy`; anywhere else it falls back to
the default strategy (or `MirroredStrategy` with several GPUs). Nothing is downloaded at run time: point
`MODEL_DIR` at a transformers TF checkpoint of MiniLM-L6-H384 (`tf_model.h5` + tokenizer files) and `DATA` at the
tweets CSV, e.g. on a mounted Drive. On Colab, install first (not run here):

```
!pip install "tfresp[dev] @ git+<your tfresp repository>"   # or: pip install tfresp-*.whl
```

`BATCH_SIZE` is **per replica**; the global batch (what DP accounting and the learning rate refer to) is
`BATCH_SIZE × replicas`, and both appear in `report.training`.
'''),
code('''
MODEL_DIR = "../shared/models/minilm-l6-h384-uncased"
DATA = "../shared/data/tweets/sentiment_tweets.csv.gz"
MAX_ROWS = None          # e.g. 200 for a smoke test
MAX_LENGTH = 64
EPOCHS = 2
BATCH_SIZE = 32          # per replica
LEARNING_RATE = 5e-5
FREEZE = None            # None | "embeddings" | "all-but-head" | N (layers)
EXPORT = True
OUT = "runs/minilm-tpu"
''', tags=["parameters"]),
code(FIND_ROOT),
code('''
import tfresp
from tfresp.distribute import tpu_or_default

strategy, kind = tpu_or_default()   # TPUStrategy on a TPU runtime, else the default strategy
replicas = strategy.num_replicas_in_sync
print(f"strategy: {kind} ({type(strategy).__name__}), replicas: {replicas}")
for path in (MODEL_DIR, DATA):
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} not found: set MODEL_DIR / DATA in the parameters cell")
'''),
code('''
config = {
    "name": "minilm-tweets-tpu",
    "seed": 0,
    "data": {"source": DATA, "text": "text", "label": "sentiment", "max_length": MAX_LENGTH, "max_rows": MAX_ROWS,
             "split": {"test": 0.1, "validation": 0.05}},
    "model": {"kind": "checkpoint", "checkpoint": MODEL_DIR, "dropout": 0.1, "freeze": FREEZE},
    "train": {"epochs": EPOCHS, "batch_size": BATCH_SIZE * replicas, "optimizer": "adamw",
              "learning_rate": LEARNING_RATE, "warmup": 0.1, "weight_decay": 0.01, "clipnorm": 1.0},
    # tfresp builds the model inside the chosen strategy's scope: "tpu" on a TPU runtime, "auto" elsewhere.
    "distribute": "tpu" if kind == "tpu" else "auto",
    "export": {"saved_model": EXPORT},
}
result = tfresp.fit(config, out=OUT, overwrite=True, quiet=True)
'''),
code('''
tr = result.report["training"]
print(f"strategy={tr['strategy']} replicas={tr['replicas']} global batch={tr['global_batch_size']} "
      f"per-replica batch={tr['per_replica_batch_size']} fit time={tr['timings']['fit_seconds']:.1f}s")
ev = result.report["evaluation"]["test"]
print({k: round(ev[k], 4) for k in ("accuracy", "f1") if isinstance(ev.get(k), float)})
print("run directory:", result.run_dir)
'''),
]
nbf.write(q, str(Path(__file__).parent / "quickstart.ipynb"))
nbf.write(t, str(Path(__file__).parent / "colab_tpu_finetune.ipynb"))
