"""The README's Python section runs as written: every ```python block of README.md's
"## Python" section (and of bindings/python/README.md), each in a fresh namespace and an
empty working directory. Blocks fenced ```py (the PyLate side-by-side) are not run."""

import os
import re

import pytest
from conftest import MODELS, ROOT, require


def python_blocks(path, section=None):
    text = open(path, encoding="utf-8").read()
    if section is not None:
        start = text.index(f"\n## {section}\n")
        end = text.find("\n## ", start + 1)
        text = text[start:end if end >= 0 else len(text)]
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


MAIN = python_blocks(os.path.join(ROOT, "README.md"), "Python")
PACKAGE = python_blocks(os.path.join(ROOT, "bindings", "python", "README.md"))


def test_the_sections_have_their_blocks():
    # A renamed section or fence would otherwise silently test nothing.
    assert len(MAIN) >= 2 and any("model=" in b for b in MAIN) and len(PACKAGE) >= 1


@pytest.mark.parametrize("block", MAIN + PACKAGE, ids=lambda b: b.strip().splitlines()[-1][:40])
def test_block_runs(block, tmp_path, monkeypatch, capsys):
    if "model=" in block:
        require(os.path.isfile(os.path.join(MODELS, "all-MiniLM-L6-v2", "model.safetensors")),
                "all-MiniLM-L6-v2 is not in the model cache (scripts/get-model.sh)")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README block", "exec"), {"__name__": "__readme__"})
    assert os.listdir(tmp_path), "the block created its database"
