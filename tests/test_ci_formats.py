"""`--output-format github|gitlab|junit|markdown`: each parsed back by a reader of its format and
compared with the run's own JSON (diagnostics, gates, verdict); hostile names stay text."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from typer.testing import CliRunner

from xentcli.cli import app

runner = CliRunner()
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
BROKEN = str(SAMPLE / "broken_one_based.parquet")


def run(*args, env=None):
    return runner.invoke(app, [*map(str, args)], env=env)


def reference(*args) -> dict:
    return json.loads(run(*args, "--json").stdout)


COMMAND = re.compile(r"^::(error|warning|notice) (.*?)::(.*)$")


def _unescape(text: str) -> str:
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%3A", ":").replace("%2C", ",").replace("%25", "%")


def parse_github(text: str) -> list[tuple[str, dict[str, str], str]]:
    out = []
    for line in text.splitlines():
        match = COMMAND.match(line)
        if match:
            props = dict(part.split("=", 1) for part in match.group(2).split(","))
            out.append((match.group(1), {k: _unescape(v) for k, v in props.items()}, _unescape(match.group(3))))
    return out


def test_github_annotations_are_the_diagnostics_and_failed_gates():
    result = run("check", BROKEN, "--max-loss", "0.5", "--output-format", "github")
    doc = reference("check", BROKEN, "--max-loss", "0.5")
    commands = parse_github(result.stdout)
    level = {"error": "error", "warning": "warning", "info": "notice"}
    diagnostics = [(c, p, m) for c, p, m in commands if not p["title"].startswith("xent gate")]
    assert [(c, p["title"]) for c, p, _ in diagnostics] == [(level[d["severity"]], f"{d['code']} {d['name']}") for d in doc["diagnostics"]]
    assert all(p["file"] == BROKEN for _, p, _ in commands)
    failed_gates = [g["gate"] for g in doc["gates"] if not g["passed"]]
    assert [p["title"] for _, p, _ in commands if p["title"].startswith("xent gate")] == [f"xent gate: {g}" for g in failed_gates]
    assert result.exit_code == 1 and result.stdout.splitlines()[-1].startswith("FAIL: ")


def test_github_step_summary_is_appended(tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("before\n")
    result = run("check", BROKEN, "--output-format", "github", env={"GITHUB_STEP_SUMMARY": str(summary)})
    text = summary.read_text()
    assert result.exit_code == 1 and text.startswith("before\n## xent check: FAIL") and "| XE201 |" in text


def test_gitlab_code_quality_report():
    first = json.loads(run("check", BROKEN, "--output-format", "gitlab").stdout)
    second = json.loads(run("check", BROKEN, "--output-format", "gitlab", "--chunk-rows", "7").stdout)
    doc = reference("check", BROKEN)
    assert [i["check_name"] for i in first if not i["check_name"].startswith("xent-gate")] == [d["code"] for d in doc["diagnostics"]]
    assert {i["severity"] for i in first} <= {"critical", "major", "info"}
    assert {(i["check_name"], i["severity"]) for i in first} >= {("XE201", "critical"), ("XE402", "major"), ("XE209", "info")}
    for issue in first:
        assert set(issue) == {"description", "check_name", "fingerprint", "severity", "location"}
        assert issue["location"] == {"path": BROKEN, "lines": {"begin": 1}}
    assert [i["fingerprint"] for i in first] == [i["fingerprint"] for i in second]  # stable across runs
    assert len({i["fingerprint"] for i in first}) == len(first)


def test_junit_counts_agree_with_its_testcases():
    result = run("check", BROKEN, "--max-loss", "9", "--fail-on", "warning", "--output-format", "junit")
    suite = ET.fromstring(result.stdout)
    doc = reference("check", BROKEN, "--max-loss", "9", "--fail-on", "warning")
    cases = suite.findall("testcase")
    assert suite.tag == "testsuite" and int(suite.get("tests")) == len(cases) == len(doc["gates"]) + len(doc["diagnostics"])
    failed = [c for c in cases if c.find("failure") is not None]
    assert int(suite.get("failures")) == len(failed)
    # warnings fail with --fail-on warning, info does not; the gate of 9 passes
    assert sorted(c.get("name") for c in failed) == sorted([f"{d['code']} {d['name']}" for d in doc["diagnostics"] if d["severity"] != "info"]
                                                           + [g["gate"] for g in doc["gates"] if not g["passed"]])
    assert "non-finite rows" in [g["gate"] for g in doc["gates"] if not g["passed"]] and "mean loss" in [c.get("name") for c in cases]
    assert int(suite.get("errors")) == 0 and int(suite.get("skipped")) == 0


def test_markdown_tables_and_score_and_diff():
    md = run("score", SAMPLE / "cifar10_val.parquet", "--output-format", "markdown").stdout
    assert md.startswith("## xent score: PASS") and "| mean loss | 0.507451 |" in md
    diff = run("diff", SAMPLE / "cifar10_val.parquet", SAMPLE / "cifar10_val_candidate.parquet", "--key", "id",
               "--fail-on-regression", "0.01", "--output-format", "github")
    commands = parse_github(diff.stdout)
    assert diff.exit_code == 1 and any(p["title"] == "xent gate: fail-on-regression" for _, p, _ in commands)


def test_hostile_names_cannot_inject_commands_or_markup(tmp_path):
    name = tmp_path / "a%2C|<b>x<b>,c:d\n::error title=pwned::\x1b[31m.parquet"
    shutil.copy(BROKEN, name)
    gh = run("check", name, "--output-format", "github").stdout
    lines = gh.splitlines()
    assert not any(line.startswith("::error title=pwned") for line in lines)
    assert all(line.startswith("::") or line.startswith(("PASS", "FAIL")) for line in lines)
    assert "\x1b" not in gh
    for _, props, _ in parse_github(gh):
        assert props["file"].endswith(".parquet") and "%2C" in props["file"]  # the name's own "%2C" survives as text
    md = run("check", name, "--output-format", "markdown").stdout
    assert "<b>" not in md and "\x1b" not in md
    ET.fromstring(run("check", name, "--output-format", "junit").stdout)  # well-formed XML
    json.loads(run("check", name, "--output-format", "gitlab").stdout)


def test_json_and_another_format_are_refused():
    result = run("score", BROKEN, "--json", "--output-format", "github")
    assert result.exit_code == 2 and "two formats" in result.stdout + result.stderr
    same = reference("score", BROKEN)
    assert json.loads(run("score", BROKEN, "--output-format", "json").stdout)["summary"] == same["summary"]


def test_markdown_escapes_links_images_and_headings_from_the_data(tmp_path):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    evil = "![i](https://evil.example/p.png) [x](https:evil) # h ~~s~~ <img src=x> www.evil.example"
    rng = np.random.default_rng(0)
    logits = [[0.0, 3.0 + rng.random()] for _ in range(10)] + [[3.0 + rng.random(), 0.0] for _ in range(30)]
    pq.write_table(pa.table({"logits": logits, "label": [0] * 40, "g": [evil] * 10 + ["a"] * 30}), tmp_path / "d.parquet")
    name = tmp_path / "![a](http:evil) # h.parquet"
    shutil.copy(tmp_path / "d.parquet", name)
    md = run("check", name, "--by", "g", "--max-group-gap", "0.1", "--min-group", "1", "--output-format", "markdown").stdout
    for raw in ("![", "](", "<img", "# h", "~~", "www.evil"):  # never unescaped (a backslash before each mark is text)
        assert not re.search(r"(?<!\\)" + re.escape(raw[0]) + re.escape(raw[1:]), md), raw
    assert "\\!\\[i\\]\\(https\\:" in md  # shown as text


def test_non_utf8_file_names_stay_text(tmp_path):
    import os

    import numpy as np

    name = os.fsdecode(bytes(tmp_path) + b"/bad\xff.npy")
    np.save(name, np.array([[0.0, 1.0], [2.0, 0.0]]))
    np.save(tmp_path / "y.npy", np.array([1, 2]))  # a label out of range: an error to report
    for fmt in ("github", "gitlab", "markdown", "junit"):
        out = runner.invoke(app, ["check", name, "--labels", str(tmp_path / "y.npy"), "--output-format", fmt]).stdout
        assert "\udcff" not in out and ("\\xff" in out or fmt == "junit"), fmt  # (JUnit names no file)
    json.loads(runner.invoke(app, ["check", name, "--labels", str(tmp_path / "y.npy"), "--output-format", "gitlab"]).stdout)


def test_the_verdict_line_and_gate_details_read_as_the_text_verdict(tmp_path):
    """GitHub's last line is a plain log line: a group value "%0A" stays "%0A" (it read "%250A");
    a failed gate's detail reads "3 (limit <= 0)", as the text verdict's gate line (JUnit said
    "3 <= 0" of a gate that failed because 3 > 0)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 120)
    z = rng.standard_normal((120, 3))
    z[::2][np.arange(60), y[::2]] -= 8.0  # group "%0A" (the even rows): far worse than the rest
    z[1:7:2, 0] = np.nan  # three non-finite rows in group "b"
    pq.write_table(pa.table({"logits": list(z), "label": y, "g": ["%0A", "b"] * 60}), tmp_path / "d.parquet")
    args = ["check", tmp_path / "d.parquet", "--by", "g", "--max-group-gap", "0.1", "--fail-on", "never"]
    text = run(*args).stdout
    gh = run(*args, "--output-format", "github").stdout
    verdict = [line for line in text.splitlines() if line.startswith("FAIL: ")][0]
    assert gh.splitlines()[-1] == verdict and "%0A" in verdict
    failure = [c.find("failure") for c in ET.fromstring(run(*args, "--output-format", "junit").stdout).findall("testcase")
               if c.get("name") == "non-finite rows"][0]
    assert failure.text == "3 (limit <= 0)"


def test_diff_annotations_name_the_dump_each_side_is_about(tmp_path):
    """A base-side diagnostic annotated the candidate's file (found in review): each GitHub
    annotation and GitLab issue now names the dump its side is about."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids, labels = ["a", "b", "c", "d"], [0, 1, 2, 2]
    probs = [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 2, 3]]  # three probability rows read as logits: XE104 on the base
    nan = [[1.0, 0, 0], [float("nan"), 1, 0], [0, 0, 1.0], [1.0, 2, float("inf")]]  # NaN and inf: XE101, XE102 on the candidate
    for name, rows in (("base.parquet", probs), ("cand.parquet", nan)):
        pq.write_table(pa.table({"id": ids, "logits": rows, "label": labels}), tmp_path / name)
    args = ("diff", tmp_path / "base.parquet", tmp_path / "cand.parquet", "--key", "id")
    annotations = parse_github(run(*args, "--output-format", "github").stdout)
    files = {props["title"]: props["file"] for _, props, _ in annotations if "(" in props.get("title", "")}
    assert files["XE104 probs-as-logits (base)"] == str(tmp_path / "base.parquet")
    assert files["XE101 nan-scores (candidate)"] == str(tmp_path / "cand.parquet")
    issues = json.loads(run(*args, "--output-format", "gitlab").stdout)
    paths = {issue["description"].split(":")[0] + issue["description"].rsplit("(", 1)[-1]: issue["location"]["path"] for issue in issues}
    assert paths["XE104 probs-as-logitsbase)"] == str(tmp_path / "base.parquet")
    assert paths["XE101 nan-scorescandidate)"] == str(tmp_path / "cand.parquet")


def test_summaries_add_up_and_say_weighted(tmp_path):
    """Found in review: the Markdown and HTML summaries listed rows 100, counted 90 and no ignored
    rows, called a weighted mean "mean loss", the HTML gave an interval without its level, and a
    finding about the whole dump had "0" rows in Markdown."""
    from typer.testing import CliRunner

    from xentcli.cli import app

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 100)
    y[:10] = -100
    np.savez(tmp_path / "d.npz", logits=rng.normal(size=(100, 3)), labels=y, w=rng.uniform(0, 2, 100))
    markdown = CliRunner().invoke(app, ["score", str(tmp_path / "d.npz"), "--weight-col", "w", "--output-format", "markdown",
                                        "--calibration"]).stdout
    assert "| ignored | 10 |" in markdown and "| mean loss \\(weighted\\) |" in markdown
    assert not any(line.split("|")[4].strip() == "0" for line in markdown.splitlines() if line.startswith("| XE6"))
    CliRunner().invoke(app, ["score", str(tmp_path / "d.npz"), "--weight-col", "w", "--confidence", "0.5", "--report",
                             str(tmp_path / "r.html"), "-q"])
    page = (tmp_path / "r.html").read_text()
    assert "ignored</th><td>10" in page and "mean loss (weighted)</th>" in page and "] (50%)" in page


def _group_dump(path, bad: str, column: str = "region"):
    """200 rows in four groups; the group named `bad` is confidently wrong, so a group-gap gate fails on it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    z = rng.normal(size=(200, 4)).astype(np.float32)
    y = rng.integers(0, 4, 200)
    groups = [bad if i % 4 == 0 else f"g{i % 4}" for i in range(200)]
    wrong = np.arange(200) % 4 == 0
    z[wrong] = 0
    z[wrong, (y[wrong] + 1) % 4] = 12
    pq.write_table(pa.table({"logits": pa.array(list(z), pa.list_(pa.float32())), "label": y, column: groups}), path)
    return path


def runner_commands(text: str) -> list[str]:
    """The lines a CI runner would take for a command (GitHub Actions' runner: '::' after the line is
    trimmed, or the legacy '##[' anywhere in it; Azure Pipelines: '##vso[' anywhere)."""
    return [line for line in text.splitlines()
            if re.match(r"::[A-Za-z-]+( [^:]*)?::", line.strip()) or "##[" in line or "##vso[" in line]


def test_data_cannot_forge_runner_commands_in_any_line(tmp_path):
    """Found in review: a group value '##[add-mask]FAIL' in the github format's verdict line (a plain
    log line) was a legacy workflow command the runner obeys anywhere in a line; so was a column name
    in an error line; and in a GitHub Actions job a text table's cell '::warning::…' was a command
    (the runner trims the line first). Such text shows its first character as an escape."""
    for bad in ("##[add-mask]FAIL", "##[set-output name=verdict;]PASS", "##vso[task.setvariable variable=x]1", "::warning::looks_fine"):
        dump = _group_dump(tmp_path / "g.parquet", bad)
        env = {"GITHUB_ACTIONS": "true"}
        check = run("check", dump, "--by", "region", "--max-group-gap", "0.1", "--output-format", "github", env=env)
        assert check.exit_code == 1
        forged = [line for line in runner_commands(check.stdout) if not re.match(r"::(error|warning|notice) file=", line)]
        assert forged == [], forged
        text = run("score", dump, "--by", "region", env=env)
        assert runner_commands(text.stdout) == [] and runner_commands(text.stderr) == []
        missing = run("check", dump, "--label-col", bad, "--output-format", "github", env=env)
        assert missing.exit_code == 2 and runner_commands(missing.stderr) == []
    shown = run("score", _group_dump(tmp_path / "h.parquet", "##[error]x"), "--by", "region")
    assert "\\x23#[error]x" in shown.stdout  # outside GitHub Actions too: legacy commands are read from any log
    plain = run("score", _group_dump(tmp_path / "c.parquet", "std::vector"), "--by", "region")
    assert "std::vector" in plain.stdout  # '::' is left alone outside a GitHub Actions job


def test_invisible_and_xml_forbidden_characters_are_shown_as_escapes(tmp_path):
    """Found in review: U+FFFE/U+FFFF made the JUnit file invalid XML, and format characters the
    escaping missed (soft hyphen, Arabic letter mark, tag characters, Hangul filler) let two groups
    look alike or like nothing: 'eu' and 'eu\\u00ad' both showed as 'eu'."""
    for bad, shown in (("x\ufffe\uffff]]>&<", "x\\ufffe\\uffff"), ("eu\u00ad", "eu\\u00ad"), ("eu\U000e0020", "eu\\U000e0020"),
                       ("\u3164", "\\u3164"), ("\u061c", "\\u061c")):
        dump = _group_dump(tmp_path / "g.parquet", bad)
        junit = run("check", dump, "--by", "region", "--max-group-gap", "0.1", "--output-format", "junit")
        ET.fromstring(junit.stdout.split("\n", 1)[1])  # parses
        table = run("score", dump, "--by", "region")
        assert shown in table.stdout and bad not in table.stdout, (bad, table.stdout)


def test_each_gate_carries_its_own_reasons(tmp_path):
    """Found in review: a failed gate's reasons were found by matching its name in the reasons' text,
    so the failing group was never named in the CI formats, and a group's reason ('… mean loss 12
    exceeds …') landed on the mean-loss gate; a group value holding another gate's name steered it."""
    dump = _group_dump(tmp_path / "g.parquet", "accuracy ECE mean loss")
    result = run("check", dump, "--by", "region", "--max-group-gap", "0.1", "--max-loss", "0.1", "--output-format", "junit")
    suite = ET.fromstring(result.stdout.split("\n", 1)[1])
    failures = {case.get("name"): case.find("failure").get("message") for case in suite if case.find("failure") is not None}
    assert failures["mean loss"].startswith("mean loss ") and "group" not in failures["mean loss"]
    assert failures["group gap (Holm lower bound)"].startswith("group region=accuracy ECE mean loss: mean loss ")
    github = run("check", dump, "--by", "region", "--max-group-gap", "0.1", "--output-format", "github")
    gates = [m for _, p, m in parse_github(github.stdout) if p["title"] == "xent gate: group gap (Holm lower bound)"]
    assert len(gates) == 1 and gates[0].startswith("group region=accuracy ECE mean loss: mean loss ")


def test_diffs_group_gates_name_their_failing_groups(tmp_path):
    """Found in review: diff's per-group gates said only 'fail-on-regression by group (Holm): lower
    … against 0.2' in every CI format; the failing group was named in the closing line alone. The
    candidate's logits are tripled in group b only: b alone fails, and each format names it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(5)
    z, y = rng.normal(size=(600, 3)), rng.integers(0, 3, 600)
    group = np.array(["a", "b|`x`", "c"])[np.arange(600) % 3]
    worse = z.copy()
    worse[group == "b|`x`"] *= 3.0
    pq.write_table(pa.table({"logits": list(z), "label": y, "grp": group}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"logits": list(worse), "label": y, "grp": group}), tmp_path / "b.parquet")
    args = ["diff", tmp_path / "a.parquet", tmp_path / "b.parquet", "--by", "grp", "--fail-on-regression", "0.2", "--output-format"]
    github = [m for _, p, m in parse_github(run(*args, "github").stdout) if p.get("title", "").endswith("by group (Holm)")]
    assert len(github) == 1 and github[0].endswith("; failing: group grp=b|`x`") and "grp=a" not in github[0], github
    suite = ET.fromstring(run(*args, "junit").stdout.split("\n", 1)[1])
    failures = {case.get("name"): case.find("failure") for case in suite.iter("testcase")}
    assert failures["fail-on-regression by group (Holm)"].get("message").endswith("; failing: group grp=b|`x`")
    issues = json.loads(run(*args, "gitlab").stdout)
    assert [i["description"] for i in issues if "by group" in i["check_name"]][0].endswith("; failing: group grp=b|`x`")


def test_step_summary_is_an_output_checked_before_the_run(tmp_path):
    """Found in review: GITHUB_STEP_SUMMARY naming the input appended the markdown to it (the dump
    was broken, exit 0), and a path that could not be written failed after 'PASS' was printed. It is
    checked with the other outputs: one line naming the variable, exit 2, and no verdict printed."""
    victim = tmp_path / "victim.parquet"
    shutil.copy(BROKEN, victim)
    before = victim.read_bytes()
    for summary, says in ((victim, "GITHUB_STEP_SUMMARY names one of the inputs"), (tmp_path / "no" / "s.md", "its folder does not exist"),
                          (tmp_path, "GITHUB_STEP_SUMMARY names a folder")):
        for command in (["check", victim, "--max-loss", "100"], ["diff", victim, victim]):
            result = run(*command, "--output-format", "github", env={"GITHUB_STEP_SUMMARY": str(summary)})
            assert result.exit_code == 2 and says in result.stderr, (summary, result.stderr)
            (kind, _, message), = parse_github(result.stdout)  # the error alone: no verdict
            assert kind == "error" and says in message and "PASS" not in result.stdout
    assert victim.read_bytes() == before


def test_no_file_a_run_reads_is_written_over(tmp_path):
    """Found in review: `diff` checked its outputs against its arguments as typed, so `-o` with
    --force replaced a shard of a folder or glob, or the --labels file, and GITHUB_STEP_SUMMARY was
    appended to --labels or --by-file (exit 0, the input broken); `merge` never checked the variable
    and appended to a partial file. Every file a run reads is refused as an output: one line, exit
    2, each file unchanged."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    shards = tmp_path / "shards"
    shards.mkdir()
    z, y = rng.normal(size=(100, 3)).astype(np.float32), rng.integers(0, 3, 100)
    for i in range(2):
        pq.write_table(pa.table({"logits": list(z[50 * i:50 * (i + 1)]), "label": y[50 * i:50 * (i + 1)]}), shards / f"p{i}.parquet")
    pq.write_table(pa.table({"logits": list(z + 0.1), "label": y}), tmp_path / "cand.parquet")
    for name, array in (("zb", z), ("zc", z + 0.1), ("y", y), ("g", rng.integers(0, 3, 100))):
        np.save(tmp_path / f"{name}.npy", array)
    pq.write_table(pa.table({"label": y}), tmp_path / "labels.parquet")
    arrays = [tmp_path / "zb.npy", tmp_path / "zc.npy"]
    for side in ("zb", "zc"):
        assert run("score", tmp_path / f"{side}.npy", "--labels", tmp_path / "y.npy", "--save-partial", tmp_path / f"{side}.xpart",
                   "--json").exit_code == 0
    files = [*shards.iterdir(), *(tmp_path / n for n in ("labels.parquet", "y.npy", "g.npy", "zb.xpart", "zc.xpart"))]
    before = {f: f.read_bytes() for f in files}
    refused = [  # (command, the file it must not write)
        (["diff", str(shards / "*.parquet"), tmp_path / "cand.parquet", "-o", shards / "p1.parquet", "--force"], None),
        (["diff", shards, tmp_path / "cand.parquet", "-o", shards / "p0.parquet", "--force"], None),
        (["diff", *arrays, "--labels", tmp_path / "labels.parquet", "-o", tmp_path / "labels.parquet", "--force"], None),
        (["diff", *arrays, "--labels", tmp_path / "y.npy", "--output-format", "github"], tmp_path / "y.npy"),
        (["diff", *arrays, "--labels", tmp_path / "y.npy", "--by-file", tmp_path / "g.npy", "--output-format", "github"], tmp_path / "g.npy"),
        (["diff", shards, tmp_path / "cand.parquet", "--output-format", "github"], shards / "p1.parquet"),
        (["merge", tmp_path / "zb.xpart", tmp_path / "zc.xpart", "--output-format", "github"], tmp_path / "zc.xpart"),
        (["merge", tmp_path / "zb.xpart", tmp_path / "zc.xpart", "--output-format", "github", "--max-loss", "9"], tmp_path / "zc.xpart"),
    ]
    for command, summary in refused:
        result = run(*command, env=None if summary is None else {"GITHUB_STEP_SUMMARY": str(summary)})
        assert result.exit_code == 2 and "one of the inputs" in result.stderr, (command, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "PASS" not in result.stdout
    assert all(f.read_bytes() == data for f, data in before.items())


def test_no_output_is_written_over_by_another_or_into_an_input_folder(tmp_path):
    """Found in review: GITHUB_STEP_SUMMARY could name the run's own -o file, partial file or report
    (the markdown was appended to what the run had just written, exit 0), and `score shards -o
    shards/rows.parquet` wrote a file the next read of the folder took for a shard. Each is refused
    before the run: one line, exit 2, nothing written; a name beginning with '_' (left out of a
    folder's shards) is allowed."""
    rng = np.random.default_rng(2)
    np.save(tmp_path / "z.npy", rng.normal(size=(30, 3)))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 30))
    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(2):
        shutil.copy(SAMPLE / "cifar10_val.parquet", shards / f"p{i}.parquet")
    arrays = [tmp_path / "z.npy", "--labels", tmp_path / "y.npy"]
    cases = [
        (["check", *arrays, "-o", tmp_path / "out.csv", "--fail-on", "never"], tmp_path / "out.csv"),
        (["score", *arrays, "--save-partial", tmp_path / "p.xpart"], tmp_path / "p.xpart"),
        (["diff", tmp_path / "z.npy", tmp_path / "z.npy", "--labels", tmp_path / "y.npy", "--report", tmp_path / "r.html"], tmp_path / "r.html"),
        (["score", shards, "-o", shards / "rows.parquet"], None),
        (["score", shards, "--save-partial", shards / "sub" / "rows.csv"], None),
        (["diff", shards, shards, "-o", shards / "pairs.parquet"], None),
    ]
    (shards / "sub").mkdir()
    for command, summary in cases:
        env = {"GITHUB_STEP_SUMMARY": str(summary)} if summary else None
        result = run(*command, "--output-format", "github", env=env)
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, (command, result.stderr)
        assert "name the same file" in result.stderr or "lies in an input folder" in result.stderr, (command, result.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards", "y.npy", "z.npy"]
    assert sorted(p.name for p in shards.iterdir()) == ["p0.parquet", "p1.parquet", "sub"] and not any((shards / "sub").iterdir())
    assert run("score", shards, "-o", shards / "_rows.parquet").exit_code == 0


def test_markdown_leaves_only_numbers_unescaped(tmp_path, monkeypatch):
    """Found in review: text made of '-+0-9.,e []' skipped the escaping, so a dump named '---',
    '- [ ]' or '1.' rendered as a rule, a task box or an empty list (the path vanished). Rendered with
    markdown-it-py (Rich's own CommonMark parser), the path is text in a paragraph."""
    from markdown_it import MarkdownIt

    for name in ("---", "- [ ]", "1.", "+ 1"):
        folder = tmp_path / f"d{len(name)}{name.count('-')}"
        folder.mkdir()
        shutil.copy(SAMPLE / "cifar10_val.parquet", folder / name)
        monkeypatch.chdir(folder)  # the path as given: the name alone
        result = run("check", "--format", "parquet", "--max-loss", "100", "--output-format", "markdown", "--", name)
        assert result.exit_code == 0, result.stderr
        tokens = MarkdownIt("commonmark").parse(result.stdout)
        assert [t.type for t in tokens[3:6]] == ["paragraph_open", "inline", "paragraph_close"], name
        assert tokens[4].content.replace("\\", "") == name


def test_an_unusable_input_still_gives_each_format_a_document(tmp_path):
    """Found in review: exit 2 printed nothing on stdout in the CI formats — no annotation, an empty
    JUnit file (invalid XML) and an empty Code Quality file (invalid JSON) for the CI job to read."""
    missing = tmp_path / "missing.parquet"
    for command in (["check", missing, "--max-loss", "1"], ["score", missing], ["diff", missing, missing]):
        outputs = {fmt: run(*command, "--output-format", fmt) for fmt in ("github", "gitlab", "junit", "markdown")}
        assert all(r.exit_code == 2 and "no such file" in r.stderr for r in outputs.values())
        (kind, props, message), = parse_github(outputs["github"].stdout)
        assert kind == "error" and props == {"file": str(missing), "title": "xent: InputError"} and message.endswith("no such file")
        issue, = json.loads(outputs["gitlab"].stdout)
        assert issue["severity"] == "blocker" and issue["location"]["path"] == str(missing)
        suite = ET.fromstring(outputs["junit"].stdout.split("\n", 1)[1])
        assert (suite.get("tests"), suite.get("errors")) == ("1", "1") and suite.find("testcase/error").get("type") == "InputError"
        assert outputs["markdown"].stdout.startswith("## xent: ERROR\n")


@pytest.mark.parametrize("fmt", ["github", "gitlab", "junit", "markdown", "json"])
@pytest.mark.parametrize("spelled", ["apart", "joined"])
def test_a_mistyped_option_value_still_prints_one_error_in_the_format_asked(fmt, spelled):
    """Found in review: `--max-loss two` is a usage error, caught before xent knows the format: the
    CI formats printed nothing (an empty JUnit file), although each prints one error on exit 2. The
    format is read from the command line's words; a real process, as CI runs it."""
    import subprocess
    import sys

    sample = Path(__file__).resolve().parent.parent / "sample_data" / "cifar10_val.parquet"
    asked = ["--output-format", fmt] if spelled == "apart" else [f"--output-format={fmt}"]
    proc = subprocess.run([sys.executable, "-m", "xentcli", "check", str(sample), *asked, "--max-loss", "two"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    out = proc.stdout
    if fmt == "github":
        assert out.startswith("::error ") and "--max-loss" in out
    elif fmt == "gitlab":
        assert json.loads(out)[0]["severity"] == "blocker" and "--max-loss" in json.loads(out)[0]["description"]
    elif fmt == "junit":
        assert ET.fromstring(out.split("\n", 1)[1]).get("errors") == "1"
    elif fmt == "markdown":
        assert out.startswith("## xent: ERROR") and "max" in out
    else:
        assert "--max-loss" in json.loads(out)["error"]["message"]


def test_a_merge_annotates_no_file_that_does_not_exist(tmp_path):
    """Found in review: `merge --output-format github` placed its annotations on file=
    'a.parquet b.npz', the merged inputs' names joined, which names no file; a score's name the dump."""
    for name, source in (("a", "cifar10_val.parquet"), ("b", "cifar10_val.npz")):
        assert run("score", SAMPLE / source, "--save-partial", tmp_path / f"{name}.xpart", "-q").exit_code == 0
    merged = run("merge", tmp_path / "a.xpart", tmp_path / "b.xpart", "--output-format", "github")
    annotations = parse_github(merged.stdout)
    assert annotations and all("file" not in props for _, props, _ in annotations)
    scored = parse_github(run("score", SAMPLE / "cifar10_val.parquet", "--output-format", "github").stdout)
    assert all(props["file"] == str(SAMPLE / "cifar10_val.parquet") for _, props, _ in scored)
