"""Execute the notebooks headless (nbclient + the venv's ipykernel) on CPU with tiny parameters.

The parameters cell (tagged ``parameters``) is followed by an injected cell with the test's values,
as papermill does. Execution times are printed (``-s``) and appended to the JSON in $TFRESP_NB_TIMES.
"""
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NB = REPO / "notebooks"
SHARED = REPO.parent / "shared"

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")


def _require(*modules):
    for m in modules:
        if importlib.util.find_spec(m) is None:
            pytest.skip(f"{m} is not available yet")


def execute(name: str, params: dict, timeout: int = 900):
    nb = nbformat.read(NB / name, as_version=4)
    idx = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    src = "\n".join(f"{k} = {v!r}" for k, v in params.items())
    injected = nbformat.v4.new_code_cell(src)
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(idx + 1, injected)
    # the kernel inherits these; both are put back after (the tests after this one in the process see no change)
    env_before = {k: os.environ.get(k) for k in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")}
    os.environ.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    t0 = time.perf_counter()
    try:
        client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                         resources={"metadata": {"path": str(NB)}})
        client.execute()
    finally:
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    seconds = time.perf_counter() - t0
    print(f"{name}: executed in {seconds:.1f} s")
    out = os.environ.get("TFRESP_NB_TIMES")
    if out:
        times = json.loads(Path(out).read_text()) if Path(out).exists() else {}
        times[name] = round(seconds, 1)
        Path(out).write_text(json.dumps(times, indent=2))
    return nb


def outputs(nb) -> str:
    text = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            text.append(o.get("text", "") or json.dumps(o.get("data", {}).get("text/plain", "")))
    return "\n".join(text)


def test_kernel_is_this_venv():
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    assert spec.language == "python"


def test_quickstart_runs_dp_and_fairness_and_shows_the_report(tmp_path):
    _require("tfresp.privacy.concern", "tfresp.fairness.concern")
    out = tmp_path / "qs"
    nb = execute("quickstart.ipynb", {"MAX_ROWS": 1500, "EPOCHS": 1, "BATCH_SIZE": 128, "BOOTSTRAP": 20,
                                      "MIA_AUDIT": False, "EXPORT": False, "OUT": str(out)})
    text = outputs(nb)
    report = json.loads((out / "report.json").read_text())
    eps = report["privacy"]["epsilon"]
    assert 0 < eps <= 3.0 + 1e-6
    assert f"epsilon = {eps:.3f}" in text  # the notebook shows the run's own number
    assert "demographic_parity_difference" in text and "CI [" in text
    assert report["fairness"]["sex"]["equalized_odds_difference_ci"]
    assert any("text/markdown" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


def _tweets():
    data = SHARED / "data" / "tweets" / "sentiment_tweets.csv.gz"
    if not data.exists():
        pytest.skip("../shared tweets not present")
    return data


def _check_text_run(nb, out, batch):
    text = outputs(nb)
    assert "strategy: default" in text and "replicas: 1" in text
    report = json.loads((out / "report.json").read_text())
    tr = report["training"]
    assert (tr["strategy"], tr["global_batch_size"], tr["per_replica_batch_size"]) == ("default", batch, batch)
    assert f"per-replica batch={batch}" in text
    eps = report["privacy"]["epsilon"]
    assert 0 < eps <= 8.0 + 1e-6 and f"epsilon = {eps:.3f}" in text  # the notebook shows the run's own number
    assert report["model"]["checkpoint_kind"] == "transformers"
    return text, report


def test_text_dp_notebook_fine_tunes_a_safetensors_checkpoint_with_dp(tmp_path):
    """A tiny random BERT saved as Hub-style safetensors + tokenizer.json, through the notebook, with DP."""
    _require("tfresp.models.hf_loading", "tfresp.privacy.concern")
    from tests.models.test_hf_loading import tiny_bert_dir

    import pandas as pd
    from tokenizers import BertWordPieceTokenizer

    texts = pd.read_csv(_tweets(), nrows=400, encoding_errors="replace")["text"].astype(str).tolist()
    wp = BertWordPieceTokenizer(lowercase=True, strip_accents=True)  # a small WordPiece: a fast embedding
    wp.train_from_iterator(texts, vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                           show_progress=False)
    wp.save(str(tmp_path / "tokenizer.json"))
    model = tiny_bert_dir(tmp_path / "tiny-bert", tmp_path / "tokenizer.json")
    out = tmp_path / "dp"
    nb = execute("text_dp_finetune.ipynb", {"MODEL_DIR": str(model), "DATA": str(_tweets()), "MAX_ROWS": 240,
                                            "MAX_LENGTH": 16, "EPOCHS": 1, "BATCH_SIZE": 32, "EXPORT": False,
                                            "OUT": str(out)})
    text, _ = _check_text_run(nb, out, 32)
    assert "weights from model.safetensors, tokenizer from tokenizer.json" in text


@pytest.mark.slow  # MiniLM (22.7M params) under DP on CPU: minutes
def test_text_dp_notebook_fine_tunes_minilm(tmp_path):
    _require("tfresp.models.hf_loading", "tfresp.privacy.concern")
    model = SHARED / "models" / "minilm-l6-h384-uncased"
    if not (model / "tf_model.h5").exists():
        pytest.skip("../shared MiniLM checkpoint not present")
    out = tmp_path / "minilm"
    nb = execute("text_dp_finetune.ipynb", {"MODEL_DIR": str(model), "DATA": str(_tweets()), "MAX_ROWS": 240,
                                            "MAX_LENGTH": 16, "EPOCHS": 1, "BATCH_SIZE": 16, "EXPORT": False,
                                            "OUT": str(out)})
    text, _ = _check_text_run(nb, out, 16)
    assert "weights from tf_model.h5" in text


def test_install_cells_install_from_a_variable_not_an_index_name():
    """tfresp is not on the package index: every notebook installs what TFRESP_PIP names (a URL or a wheel)."""
    for path in sorted(NB.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        assert 'TFRESP_PIP = ""' in params.source, path.name
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert '"tfresp"]' not in code and "'tfresp'" not in code, path.name
        assert "TFRESP_PIP]" in code or "TFRESP_PIP," in code, path.name
        assert "set TFRESP_PIP" in code, path.name  # a clear message when it is empty


def test_colab_tpu_notebook_falls_back_on_cpu_and_runs_dp_with_xla(tmp_path):
    """The TPU notebook headless on CPU: TPUStrategy is not available, the default strategy is used, DP-SGD runs
    with train.jit_compile true, and the notebook says that no TPU is in use (nothing here ran on a TPU)."""
    _require("tfresp.models.hf_loading", "tfresp.privacy.concern")
    from tests.models.test_hf_loading import tiny_bert_dir

    import pandas as pd
    from tokenizers import BertWordPieceTokenizer

    nb_src = nbformat.read(NB / "colab_tpu_dp.ipynb", as_version=4)
    install = "\n".join(c.source for c in nb_src.cells)
    assert 'TF_TPU_PIP = "tensorflow-tpu==2.20.*"' in install and "TPUStrategy" in install
    texts = pd.read_csv(_tweets(), nrows=400, encoding_errors="replace")["text"].astype(str).tolist()
    wp = BertWordPieceTokenizer(lowercase=True, strip_accents=True)
    wp.train_from_iterator(texts, vocab_size=400, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                           show_progress=False)
    wp.save(str(tmp_path / "tokenizer.json"))
    model = tiny_bert_dir(tmp_path / "tiny-bert", tmp_path / "tokenizer.json")
    out = tmp_path / "tpu"
    nb = execute("colab_tpu_dp.ipynb", {"MODEL_DIR": str(model), "DATA": str(_tweets()), "MAX_ROWS": 240,
                                        "MAX_LENGTH": 16, "EPOCHS": 1, "BATCH_SIZE": 32, "OUT": str(out)})
    text = outputs(nb)
    assert "strategy: default" in text and "NOTE: no TPU in use" in text
    report = json.loads((out / "report.json").read_text())
    assert report["training"]["strategy"] == "default" and report["training"]["replicas"] == 1
    assert report["run"]["config"]["train"]["jit_compile"] is True
    eps = report["privacy"]["epsilon"]
    assert 0 < eps <= 8.0 + 1e-6 and f"epsilon = {eps:.3f}" in text
