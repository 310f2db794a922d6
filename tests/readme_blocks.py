"""The README's console examples are real runs: each `$ xent …` line in a ```console block is run
at 100 columns in a folder holding the repository's sample_data/ and the few files the README's
examples name besides (FIXTURES: made here, from fixed seeds), and the lines under it must be what
it prints (stdout and stderr); a block whose output starts with `…` shows the tail of it;
`$ echo $?` shows the exit code of the command before. Commands naming files that are not there
(a cloud bucket, a cluster), and commands that write files or redirect their output, are left
alone: their runs would change what the next run finds.

`python tests/readme_blocks.py --update` rewrites the outputs in README.md from fresh runs (as
cog does); tests/test_readme.py checks them."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"```console\n(.*?)```", re.S)


@dataclass
class Example:
    command: str
    expected: list[str]  # the lines shown under it
    tail: bool  # the shown lines are the end of the output ("…" first)


def examples(text: str) -> list[list[Example]]:
    """The examples of each console block, in order."""
    blocks = []
    for match in BLOCK.finditer(text):
        current: list[Example] = []
        for line in match.group(1).splitlines():
            if line.startswith("$ "):
                current.append(Example(line[2:], [], False))
            elif current:
                if line == "…" and not current[-1].expected:
                    current[-1].tail = True
                else:
                    current[-1].expected.append(line)
        blocks.append(current)
    return blocks


WRITES = ("-o", "--output", "--report", "--save-partial", "--png", ">", "2>", ">>")


def fixtures(folder: Path) -> None:
    """The files the README's examples name beside sample_data/: a PyTorch-layout sequence dump
    (z: [4, 5, 6] logits, y: [4, 6] labels padded with -100 to 6, 4, 5 and 2 tokens) and a Parquet
    dump with columns id, logits, label (the sample's)."""
    import numpy as np

    rng = np.random.default_rng(2024)
    np.save(folder / "z.npy", rng.normal(size=(4, 5, 6)) * 2)
    labels = rng.integers(0, 5, (4, 6))
    for row, tokens in enumerate((6, 4, 5, 2)):
        labels[row, tokens:] = -100
    np.save(folder / "y.npy", labels)
    (folder / "preds.parquet").write_bytes((ROOT / "sample_data" / "cifar10_val.parquet").read_bytes())


def workdir() -> Path:
    """The folder the examples run in (made once a process): sample_data/, tests/ and the fixtures."""
    global _WORKDIR
    if _WORKDIR is None:
        import atexit
        import shutil
        import tempfile

        _WORKDIR = Path(tempfile.mkdtemp(prefix="xent-readme-"))
        atexit.register(shutil.rmtree, _WORKDIR, True)
        for shared in ("sample_data", "tests"):  # the examples name files of both
            (_WORKDIR / shared).symlink_to(ROOT / shared)
        fixtures(_WORKDIR)
    return _WORKDIR


_WORKDIR: Path | None = None


def runnable(command: str) -> bool:
    words = shlex.split(command, comments=True)
    if words[:1] != ["xent"] or any(word in WRITES or word.startswith(">") for word in words):
        return False
    paths = [word for word in words[2:] if not word.startswith("-") and ("/" in word or "." in word)]
    return all((workdir() / path).exists() for path in paths if not re.match(r"^[\d.e-]+$", path))


def run(command: str) -> tuple[list[str], int]:
    words = shlex.split(command, comments=True)
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run([sys.executable, "-m", "xentcli", *words[1:]], cwd=workdir(), env=env, capture_output=True, text=True)
    lines = [line.rstrip() for line in (done.stdout + done.stderr).splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines, done.returncode


def expected_and_actual(example: Example, last_code: int | None) -> tuple[list[str], list[str], int | None]:
    """(shown, what a run gives in the same form, the exit code for a following `echo $?`)."""
    if example.command == "echo $?":
        return example.expected, [str(last_code)], last_code
    lines, code = run(example.command)
    shown = list(example.expected)
    while shown and not shown[-1]:
        shown.pop()
    actual = lines[-len(shown):] if example.tail and shown else lines
    return shown, actual, code


def update() -> None:
    text = README.read_text()
    out, position = [], 0
    for match in BLOCK.finditer(text):
        out.append(text[position:match.start(1)])
        position = match.end(1)
        if not match.group(1).startswith("$ "):  # a list of commands, not an example: as it is
            out.append(match.group(1))
            continue
        body, code = [], None
        for example in examples(match.group(0).replace("```console\n", "```console\n", 1))[0]:
            body.append(f"$ {example.command}")
            if example.command != "echo $?" and not runnable(example.command):
                body += (["…"] if example.tail else []) + example.expected
                continue
            shown, actual, code = expected_and_actual(example, code)
            body += (["…"] if example.tail else []) + (actual if not example.tail else actual[-len(shown):])
        out.append("\n".join(body) + "\n")
    out.append(text[position:])
    text = "".join(out)
    start, end = json_block(text)
    README.write_text(text[:start] + json_example() + "\n" + text[end:])



JSON_COMMAND = "xent score sample_data/cifar10_val.parquet --json --id-col id --worst 1 --per-class"


def json_example() -> str:
    """The README's `--json` example: a real run, its lists cut to their first item."""
    lines, _ = run(JSON_COMMAND)
    doc = json.loads("\n".join(lines))
    doc["per_class"] = doc["per_class"][:1] + ["… one object per class"]
    doc["diagnostics"] = doc["diagnostics"][:1] + ["… one object per diagnostic"]
    return json.dumps(doc, indent=1, ensure_ascii=False)


def json_block(text: str) -> tuple[int, int]:
    """Where the README's ```json example sits (start and end of its body)."""
    start = text.index("```json\n") + len("```json\n")
    return start, text.index("```", start)


if __name__ == "__main__":
    if sys.argv[1:] == ["--update"]:
        update()
    else:
        print(__doc__)
