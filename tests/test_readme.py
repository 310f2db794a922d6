"""The outputs shown in README.md are what the commands print (tests/readme_blocks.py)."""

from __future__ import annotations

import pytest

from readme_blocks import README, examples, expected_and_actual, json_block, json_example, runnable

BLOCKS = examples(README.read_text())
CASES = [(i, block) for i, block in enumerate(BLOCKS) if any(runnable(e.command) for e in block)]


def test_the_readme_has_runnable_examples():
    assert len(CASES) >= 5


@pytest.mark.parametrize("index,block", CASES, ids=[f"block{i}" for i, _ in CASES])
def test_readme_example(index, block):
    code = None
    for example in block:
        if example.command != "echo $?" and not runnable(example.command):
            continue
        shown, actual, code = expected_and_actual(example, code)
        assert actual == shown, (
            f"README block {index}, `{example.command}`: the output changed; run `python tests/readme_blocks.py --update`"
        )


def test_readme_json_example():
    text = README.read_text()
    start, end = json_block(text)
    assert text[start:end].rstrip("\n") == json_example(), "the JSON example changed; run `python tests/readme_blocks.py --update`"
