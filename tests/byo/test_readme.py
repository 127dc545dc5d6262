"""Every Python example of the README's "Bring your own model" section runs as written."""
import re

import numpy as np
import pytest

from tests.conftest import REPO


def section_blocks():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Bring your own model", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_section_has_the_five_examples():
    blocks = section_blocks()
    assert not any("readme_dir" in b for b in blocks)  # no name the reader does not have
    assert len(blocks) == 5
    assert all(len(b.strip().splitlines()) <= 16 for b in blocks)


def test_examples_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a reader pastes the snippets as written: nothing undefined, relative paths
    namespace = {}
    for block in section_blocks():  # executed in order, in one namespace, like a reader pasting them
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["result"].report["privacy"]["epsilon"] <= 3.0
    assert namespace["private"].ledger.epsilon <= 3.0
    from tfresp.compression.pruning_scheduler import kernel_sparsity

    assert kernel_sparsity(namespace["plain"])["global"] == pytest.approx(0.5, abs=0.05)
    # the audits example: numbers recomputed here from the model it trained
    model, X, y, groups, report = (namespace[k] for k in ("model", "X", "y", "groups", "report"))
    pred = np.argmax(model.predict(X[400:], verbose=0), axis=1)
    assert report["evaluation"]["test"]["accuracy"] == pytest.approx(float(np.mean(pred == y[400:])), abs=1e-12)
    rates = [float(np.mean(pred[groups[400:] == g])) for g in ("a", "b")]
    assert report["fairness"]["group"]["demographic_parity_difference"] == pytest.approx(abs(rates[0] - rates[1]))
    assert 0 <= report["robustness"]["pgd@0.1"]["accuracy"] <= report["robustness"]["clean_accuracy"]
    assert report["privacy"]["audit"]["members"] == 200  # balanced: as many members as the 200 test rows
    assert namespace["fair"]["side"]["demographic_parity_difference"] == pytest.approx(abs(rates[0] - rates[1]))
    from tfresp.audits import validate

    assert not validate(report)
