"""A fresh checkout of this tree, the tiny model standing in for whisper-base: a rerun of the
pipeline on the same inputs leaves `git status` clean, and every command block of the README and of
docs/*.md runs as written (those that need a GPU host, Docker or a real corpus say so and why, and
are skipped). Without the pipeline: the README stays a ten-minute read, and every relative link of
the README and docs/ leads to a file that exists."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import QUICK_BENCHMARK, REPO, dvc, git, make_project

# The line before a block that the tests do not run, and why (GPU host, Docker, a corpus).
NOT_RUN = re.compile(r"<!-- not run by the tests: (.+) -->")
BLOCK = re.compile(r"^(?P<indent> *)```bash\n(?P<body>.*?)^(?P=indent)```$", re.M | re.S)
FENCE = re.compile(r"^ *```.*?^ *```$", re.M | re.S)
# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
README_WORDS = 1500  # a newcomer's ten minutes; the depth goes to docs/


def pages() -> list[Path]:
    """The README, then every page of docs/, in name order."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def page_blocks(page: Path) -> list[tuple[str, str | None]]:
    """(commands, why they are not run or None) for each ```bash block of `page`, in order."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in BLOCK.finditer(text):
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1]
        skip = NOT_RUN.search(before)
        body = "\n".join(line.removeprefix(match["indent"]) for line in match["body"].splitlines())
        blocks.append((body, skip[1] if skip else None))
    return blocks


def command_blocks() -> list[tuple[str, int]]:
    """(page relative to the repository, index on the page) of every ```bash block of the README and
    then of docs/*.md: the README's first, since the review block needs the experiment it runs."""
    return [(page.relative_to(REPO).as_posix(), index) for page in pages() for index in range(len(page_blocks(page)))]


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of `page`: lower case, punctuation dropped, spaces as
    hyphens, a repeated heading numbered."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return found


def test_the_readme_is_a_ten_minute_read():
    words = len((REPO / "README.md").read_text(encoding="utf-8").split())
    assert words <= README_WORDS, f"README.md has {words} words, over {README_WORDS}: move depth to docs/"


def test_the_readmes_answer_is_the_committed_reports():
    """The demo's answer quoted in the README is what `make demo` prints from reports/benchmark.md
    (its first section up to the figures), and the interval the prose quotes is the metrics'."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    report = (REPO / "reports/benchmark.md").read_text(encoding="utf-8")
    section = report.split("\n## ", 2)[1].split("\n![", 1)[0]  # as the Makefile's awk cuts it
    answer = section.split("\n", 1)[1].strip()  # without its heading
    quoted = readme.split("## The demo's answer", 1)[1].split("```\n", 2)[1].split("\n\nFull report:", 1)[0]
    assert quoted.strip() == answer
    overall = json.loads((REPO / "metrics/benchmark.json").read_text())["finetuned"]["overall"]
    low, cer, high = (
        f"{100 * overall[key]:.2f}" for key in ("cer_nospace_ci_low", "cer_nospace", "cer_nospace_ci_high")
    )
    assert f"no-space CER: {cer}%, 95% interval {low}–{high}" in readme


def test_every_relative_link_of_the_readme_and_docs_leads_to_a_file_that_exists():
    broken = []
    for page in pages():
        text = FENCE.sub("", page.read_text(encoding="utf-8"))  # a link in a code block is not one
        for match in LINK.finditer(text):
            target = match["target"]
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:: not a file of the tree
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            name = page.relative_to(REPO).as_posix()
            if not linked.exists():
                broken.append(f"{name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{name}: {target} (no such heading in {linked.name})")
    assert not broken, "\n".join(broken)


def shell_env() -> dict:
    # After `make setup`, the README's one activation step: the project's environment first on PATH.
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture(scope="module")
def checkout(tmp_path_factory, sample_corpus, tiny_model) -> Path:
    """Every file git would give a clone of this working tree, the demo's inputs where the demo
    puts them (the small sample corpus, the tiny model as models/whisper-base), quick train params."""
    root = tmp_path_factory.mktemp("checkout") / "whisper-ko"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    template = REPO / ".dvc" / "plots_template.html"  # made by `make setup`
    if not template.is_file():
        subprocess.run([sys.executable, str(REPO / "tools/plots_template.py"), "--out", str(template)], check=True)
    (root / ".dvc").mkdir(parents=True)
    shutil.copy(template, root / ".dvc" / template.name)
    shutil.copytree(sample_corpus, root / "data/sample")
    shutil.copytree(tiny_model, root / "models/whisper-base")
    quick = {"method": "full", "learning_rate": 0.002, "max_steps": 4, "eval_steps": 2, "eval_max_samples": 4}
    params = {"train": {**quick, "eval_max_new_tokens": 12}, "benchmark": QUICK_BENCHMARK}
    files = [name for name in filter(None, listed.split("\0")) if (REPO / name).is_file()]
    return make_project(root, files, params, commit="checkout")  # branch main: the review commands name it


@pytest.fixture(scope="module")
def reproduced(checkout) -> Path:
    dvc(checkout, "repro")
    git(checkout, "add", "-A")
    git(checkout, "commit", "-qm", "pipeline outputs")
    return checkout


def status(root: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout


@pytest.mark.slow
def test_a_rerun_on_the_same_inputs_leaves_the_tree_clean(reproduced):
    """Every stage forced to run again: the same manifests, shards, model, curves, metrics, report
    and figures, byte for byte (dvc.lock unchanged); the timings, which differ, are not in git."""
    dvc(reproduced, "repro", "--force")
    diff = subprocess.run(["git", "diff", "--stat"], cwd=reproduced, capture_output=True, text=True).stdout
    assert status(reproduced) == "", diff
    speed = reproduced / "metrics/speed"
    assert {p.name for p in speed.iterdir()} >= {"preprocess.json", "train.json", "benchmark.json", "benchmark.md"}
    tracked = subprocess.run(["git", "ls-files"], cwd=reproduced, capture_output=True, text=True).stdout.split()
    assert "reports/benchmark.md" in tracked and "reports/figures/cer_by_category.png" in tracked
    assert not [name for name in tracked if name.startswith("metrics/speed")]


@pytest.mark.slow
@pytest.mark.parametrize(("page", "index"), command_blocks())
def test_each_readme_command_block_runs_as_written(reproduced, page, index):
    """Each ```bash block of the README and of docs/*.md, in that order, in the pipeline's checkout."""
    commands, not_run = page_blocks(REPO / page)[index]
    if not_run:
        pytest.skip(f"not run by the tests: {not_run}")
    proc = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", commands],
        cwd=reproduced,
        env=shell_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{commands}\n---\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
