"""Every Python example of the README's "Bring your own model" section runs as written."""
import re

import pytest

from tests.conftest import REPO


def section_blocks():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Bring your own model", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_section_has_the_four_examples():
    blocks = section_blocks()
    assert len(blocks) == 4
    assert all(len(b.strip().splitlines()) <= 16 for b in blocks)


def test_examples_run(tmp_path, capsys):
    namespace = {"readme_dir": tmp_path}
    for block in section_blocks():  # executed in order, in one namespace, like a reader pasting them
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["result"].report["privacy"]["epsilon"] <= 3.0
    assert namespace["private"].ledger.epsilon <= 3.0
    from tfresp.compression.pruning_scheduler import kernel_sparsity

    assert kernel_sparsity(namespace["plain"])["global"] == pytest.approx(0.5, abs=0.05)
