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

INSTALL = '''
# Install tfresp once per runtime (Colab CPU/GPU: Python 3.12 or 3.13). Skipped where tfresp already imports
# (a local checkout, or the tests). tfresp is not on the package index: TFRESP_PIP names what pip installs, the
# repository ("git+https://<host>/<you>/tfresp.git", or "/content/tfresp" after cloning it) or a wheel you built
# ("/content/tfresp-0.1.0-py3-none-any.whl", from `pip wheel --no-deps .` in the repository).
import importlib.util
import subprocess
import sys

if not (3, 11) <= sys.version_info[:2] < (3, 14):
    raise RuntimeError(f"tfresp supports Python 3.11-3.13; this runtime has {sys.version.split()[0]}")
if importlib.util.find_spec("tfresp") is None:
    if not TFRESP_PIP:
        raise RuntimeError("tfresp is not installed: set TFRESP_PIP in the parameters cell to the repository URL "
                           "(git+https://...) or the path of a tfresp wheel")
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", TFRESP_PIP])
    # tfresp accepts TensorFlow 2.20-2.21: pip keeps the runtime's TensorFlow when it is in that range
    print("installed tfresp; if TensorFlow had already been imported, restart the session (Runtime menu)")
print("python", sys.version.split()[0])
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
TFRESP_PIP = ""          # repository URL or wheel path, installed when tfresp is missing (not on the index)
''', tags=["parameters"]),
code(FIND_ROOT),
code(INSTALL),
code('''
import tfresp

config = {
    "name": "adult-quickstart-notebook",
    "seed": 0,
    "data": {"source": "adult", "label": "income", "sensitive": ["sex", "race"], "max_rows": MAX_ROWS,
             "split": {"test": "official", "validation": 0.1},
             # under DP the class list is declared (public); otherwise it is released from the labels with noise
             "categories": {"income": ["<=50K", ">50K"]}},
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

# ---------------------------------------------------------------- text fine-tune with DP (CPU/GPU; TPU documented)
t = nbf.v4.new_notebook()
t.metadata.update({"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}})
t.cells = [
md('''
# Fine-tune a Hugging Face BERT-family checkpoint on text with DP-SGD (Colab CPU/GPU)

tfresp loads **BERT-family checkpoints with a WordPiece tokenizer (BERT, DistilBERT, ELECTRA, MiniLM)** straight
from a Hugging Face directory: `config.json` + `model.safetensors` (the PyTorch-saved file new Hub checkpoints
ship) or `tf_model.h5`, and the tokenizer from `tokenizer.json` (or `vocab.txt`). The weights go into tfresp's functional Keras BERT, so
DP-SGD's fast per-example clipping covers every layer, and the exported SavedModel tokenizes raw strings itself.
(RoBERTa weights load too, with `tfresp.models.hf_loading.read_checkpoint`, but its byte-level BPE tokenizer has no
in-graph TensorFlow implementation, so `tfresp.fit` refuses it with a reason.)

`MODEL_DIR` is a local directory or, on Colab, a Hub id that the next cells download with `huggingface_hub`
(e.g. `distilbert/distilbert-base-uncased`). `DATA` is a CSV/JSONL with a text and a label column.
`TARGET_EPSILON = None` fine-tunes without DP. Every number shown is read from the run's report.

**Runtimes.** Written for Colab CPU and GPU runtimes (Python 3.12/3.13; tfresp accepts TensorFlow 2.20-2.21, so the
runtime's TensorFlow stays when it is in range); the tests execute it headless on CPU with tiny parameters. For a
Colab TPU runtime use `notebooks/colab_tpu_dp.ipynb` (installs `tensorflow-tpu` 2.20; never run on a TPU by us).
A TensorFlow without TPU support sees no TPU and trains on the host CPU: this notebook checks for that case and says
so instead of pretending.
'''),
code('''
MODEL_DIR = "../shared/models/minilm-l6-h384-uncased"   # local dir, or a Hub id on Colab
DATA = "../shared/data/tweets/sentiment_tweets.csv.gz"
TEXT, LABEL = "text", "sentiment"
MAX_ROWS = None          # e.g. 2000 for a quick look
MAX_LENGTH = 64
EPOCHS = 2
BATCH_SIZE = 64          # global batch (what DP accounting's sampling rate refers to)
LEARNING_RATE = 5e-4
FREEZE = None            # None | "embeddings" | "all-but-head" | N (first N layers + embeddings)
TARGET_EPSILON = 8.0     # None: no DP
EXPORT = True
OUT = "runs/text-dp-notebook"
TFRESP_PIP = ""          # repository URL or wheel path, installed when tfresp is missing (not on the index)
''', tags=["parameters"]),
code(FIND_ROOT),
code(INSTALL),
code('''
import glob

import tfresp
from tfresp.distribute import tpu_or_default

strategy, kind = tpu_or_default()   # TPUStrategy where TensorFlow has TPU support, else the default strategy
print(f"strategy: {kind} ({type(strategy).__name__}), replicas: {strategy.num_replicas_in_sync}")
tpu_runtime = glob.glob("/dev/accel*") or os.environ.get("TPU_ACCELERATOR_TYPE") or os.environ.get("COLAB_TPU_ADDR")
if kind != "tpu" and tpu_runtime:
    print("NOTE: this is a TPU runtime, but this TensorFlow has no TPU support: training runs on the host CPU. "
          "Use a GPU runtime (see the notes above).")
'''),
code('''
if not Path(MODEL_DIR).exists():   # a Hub id: fetch only what tfresp reads (Colab; not run by the tests)
    from huggingface_hub import snapshot_download

    MODEL_DIR = snapshot_download(MODEL_DIR, allow_patterns=["config.json", "model.safetensors", "tokenizer.json",
                                                             "vocab.txt", "tokenizer_config.json"])
if not Path(DATA).exists():
    raise FileNotFoundError(f"{DATA} not found: set DATA in the parameters cell")
from tfresp.models import bert

ck = bert.resolve_checkpoint(MODEL_DIR)
print(f"checkpoint: {ck['config'].model_type}, {ck['config'].num_layers} layers, hidden {ck['config'].hidden_size}; "
      f"weights from {ck['weights_file']}, tokenizer from {ck['tokenizer_file']}")
'''),
code('''
config = {
    "name": "text-dp-notebook",
    "seed": 0,
    "data": {"source": DATA, "text": TEXT, "label": LABEL, "max_length": MAX_LENGTH, "max_rows": MAX_ROWS,
             "split": {"test": 0.1, "validation": 0.0}},
    # dropout 0 under DP: fast (ghost) clipping needs a deterministic forward pass
    "model": {"kind": "checkpoint", "checkpoint": MODEL_DIR, "dropout": 0.0 if TARGET_EPSILON else 0.1,
              "freeze": FREEZE},
    "train": {"epochs": EPOCHS, "batch_size": BATCH_SIZE, "optimizer": "adamw", "learning_rate": LEARNING_RATE,
              "warmup": 0.1, "weight_decay": 0.01},
    "privacy": ({"target_epsilon": TARGET_EPSILON, "delta": "auto", "l2_norm_clip": 1.0, "sampling": "poisson",
                 "audit": False} if TARGET_EPSILON else None),
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
priv = result.report.get("privacy")
if priv:
    print(f"epsilon = {priv['epsilon']:.3f} at delta = {priv['delta']:.1e} (noise multiplier "
          f"{priv['noise_multiplier']:.3f}, {priv['steps']} steps)")
    print(priv["statement"])
print("run directory:", result.run_dir)
'''),
]
# ---------------------------------------------------------------- Colab TPU: DP fine-tune under TPUStrategy
u = nbf.v4.new_notebook()
u.metadata.update({"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}, "accelerator": "TPU"})
u.cells = [
md('''
# DP fine-tuning on a Colab TPU (TensorFlow 2.20, `TPUStrategy`), honestly

**Status: this notebook has never been run on a TPU** (no TPU was available while it was written). What was run:
the same cells headless on CPU, where the strategy falls back to TensorFlow's default strategy (tfresp's tests do
this on every CI run). Treat the TPU path as untested until you have run it; the report names the strategy a run
used (`training.strategy`, `training.replicas`).

What it does on a TPU runtime:
1. installs `tensorflow-tpu` 2.20 (the last TensorFlow release with a TPU wheel; tfresp accepts 2.20-2.21) and
   tfresp from `TFRESP_PIP` (the repository URL or a wheel: tfresp is not on the package index), keeping
   `tensorflow-tpu` as the only TensorFlow (tf-keras and tensorflow-text 2.20 are installed without dependencies);
2. builds a `TPUStrategy` with `tfresp.distribute.tpu_or_default()` (the default strategy when there is no TPU);
3. fine-tunes a BERT-family checkpoint on text with DP-SGD under that strategy (`distribute: tpu`), with
   `train.jit_compile: true`. XLA wants fixed shapes: the text is padded to `MAX_LENGTH`, and the batch dimension
   is fixed only where tfresp pads Poisson batches to a static size (masked padding rows); where a tfresp version
   does not, every distinct Poisson batch size is compiled once more (slow on a TPU, still correct).
   `train.batch_size` is the global batch; DP noise is added once per global step.
'''),
code('''
MODEL_DIR = "google/bert_uncased_L-2_H-128_A-2"   # a Hub id (downloaded below) or a local directory
DATA = "../shared/data/tweets/sentiment_tweets.csv.gz"
TEXT, LABEL = "text", "sentiment"
MAX_ROWS = 4000
MAX_LENGTH = 64          # every sequence is padded to this length: one shape for XLA
EPOCHS = 1
BATCH_SIZE = 128         # global batch; a multiple of 8 (TPU cores) keeps replicas' shards equal
LEARNING_RATE = 5e-4
TARGET_EPSILON = 8.0
OUT = "runs/colab-tpu-dp"
TFRESP_PIP = ""          # repository URL or wheel path, installed when tfresp is missing (not on the index)
TF_TPU_PIP = "tensorflow-tpu==2.20.*"
TF_TPU_FIND_LINKS = "https://storage.googleapis.com/libtpu-tf-releases/index.html"   # libtpu for tensorflow-tpu
''', tags=["parameters"]),
code(FIND_ROOT),
code('''
# Install (skipped where tfresp already imports: a local checkout, or the tests)
import glob
import importlib.metadata
import importlib.util
import re
import subprocess
import sys

on_tpu_runtime = bool(glob.glob("/dev/accel*") or os.environ.get("TPU_ACCELERATOR_TYPE") or os.environ.get("COLAB_TPU_ADDR"))
pip = [sys.executable, "-m", "pip", "install", "-q"]
if importlib.util.find_spec("tfresp") is None:
    if not TFRESP_PIP:
        raise RuntimeError("tfresp is not installed: set TFRESP_PIP to the repository URL (git+https://...) or the "
                           "path of a tfresp wheel")
    if on_tpu_runtime:
        subprocess.check_call(pip + [TF_TPU_PIP, "-f", TF_TPU_FIND_LINKS])
        # tensorflow-tpu provides `import tensorflow` under another distribution name: install tfresp and the
        # packages that require "tensorflow" without dependencies, so pip does not add a second (CPU) TensorFlow
        subprocess.check_call(pip + ["--no-deps", TFRESP_PIP, "tf-keras==2.20.*", "tensorflow-text==2.20.*"])
        skip = {"tensorflow", "tf-keras", "tensorflow-text", "tensorboard"}
        reqs = [r for r in importlib.metadata.requires("tfresp") or [] if "extra ==" not in r
                and re.split(r"[ <>=!~;\\[]", r, maxsplit=1)[0].lower().replace("_", "-") not in skip]
        subprocess.check_call(pip + reqs)
    else:
        subprocess.check_call(pip + [TFRESP_PIP])
    print("installed; restart the session (Runtime menu) if TensorFlow had already been imported")
'''),
code('''
import tensorflow as tf

import tfresp
from tfresp.distribute import tpu_or_default

strategy, kind = tpu_or_default()   # TPUStrategy on a TPU runtime with TPU-enabled TensorFlow, else the default
print(f"TensorFlow {tf.__version__}; strategy: {kind} ({type(strategy).__name__}), replicas: "
      f"{strategy.num_replicas_in_sync}")
if kind != "tpu":
    print("NOTE: no TPU in use: the run below trains on " + ("the host CPU although this is a TPU runtime "
          "(is tensorflow-tpu installed?)" if on_tpu_runtime else "this machine's CPU/GPU"))
'''),
code('''
from pathlib import Path

if not Path(MODEL_DIR).exists():   # a Hub id: fetch only what tfresp reads (Colab; not run by the tests)
    from huggingface_hub import snapshot_download

    MODEL_DIR = snapshot_download(MODEL_DIR, allow_patterns=["config.json", "model.safetensors", "tf_model.h5",
                                                             "tokenizer.json", "vocab.txt", "tokenizer_config.json"])
config = {
    "name": "colab-tpu-dp",
    "seed": 0,
    "data": {"source": DATA, "text": TEXT, "label": LABEL, "max_length": MAX_LENGTH, "max_rows": MAX_ROWS,
             "split": {"test": 0.1, "validation": 0.0}},
    "model": {"kind": "checkpoint", "checkpoint": MODEL_DIR, "dropout": 0.0},   # dropout 0: ghost clipping
    "train": {"epochs": EPOCHS, "batch_size": BATCH_SIZE, "optimizer": "adamw", "learning_rate": LEARNING_RATE,
              "jit_compile": True},
    "privacy": {"target_epsilon": TARGET_EPSILON, "delta": "auto", "l2_norm_clip": 1.0, "sampling": "poisson",
                "audit": False},
    "distribute": "tpu" if kind == "tpu" else "auto",
    "export": {"saved_model": False},
}
result = tfresp.fit(config, out=OUT, overwrite=True, quiet=True)
tr = result.report["training"]
print(f"strategy={tr['strategy']} replicas={tr['replicas']} global batch={tr['global_batch_size']} "
      f"per-replica batch={tr['per_replica_batch_size']} fit time={tr['timings']['fit_seconds']:.1f}s")
priv = result.report["privacy"]
print(f"epsilon = {priv['epsilon']:.3f} at delta = {priv['delta']:.1e} ({priv['steps']} steps)")
print("run directory:", result.run_dir)
'''),
]
nbf.write(q, str(Path(__file__).parent / "quickstart.ipynb"))
nbf.write(t, str(Path(__file__).parent / "text_dp_finetune.ipynb"))
nbf.write(u, str(Path(__file__).parent / "colab_tpu_dp.ipynb"))
