"""A fresh checkout of this tree, the tiny model standing in for whisper-base: a rerun of the
pipeline on the same inputs leaves `git status` clean, and every command block of the README runs
as written (those that need a GPU host, Docker or a real corpus say so and why, and are skipped)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, dvc, git

pytestmark = pytest.mark.slow

# The line before a README block that the tests do not run, and why (GPU host, Docker, a corpus).
NOT_RUN = re.compile(r"<!-- not run by the tests: (.+) -->")
BLOCK = re.compile(r"^(?P<indent> *)```bash\n(?P<body>.*?)^(?P=indent)```$", re.M | re.S)


def readme_blocks() -> list[tuple[str, str | None]]:
    """(commands, why they are not run or None) for each ```bash block of the README, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = []
    for match in BLOCK.finditer(text):
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1]
        skip = NOT_RUN.search(before)
        body = "\n".join(line.removeprefix(match["indent"]) for line in match["body"].splitlines())
        blocks.append((body, skip[1] if skip else None))
    return blocks


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
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    template = REPO / ".dvc" / "plots_template.html"  # made by `make setup`
    if not template.is_file():
        subprocess.run([sys.executable, str(REPO / "tools/plots_template.py"), "--out", str(template)], check=True)
    shutil.copy(template, root / ".dvc" / template.name)
    shutil.copytree(sample_corpus, root / "data/sample")
    shutil.copytree(tiny_model, root / "models/whisper-base")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"].update(
        method="full", learning_rate=0.002, max_steps=4, eval_steps=2, eval_max_samples=4, eval_max_new_tokens=12
    )
    params["benchmark"].update(max_new_tokens=16, max_samples=12)
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False))
    git(root, "init", "-q", "-b", "main")  # the README's review commands name the branch main
    git(root, "add", "-A")
    git(root, "commit", "-qm", "checkout")
    return root


@pytest.fixture(scope="module")
def reproduced(checkout) -> Path:
    dvc(checkout, "repro")
    git(checkout, "add", "-A")
    git(checkout, "commit", "-qm", "pipeline outputs")
    return checkout


def status(root: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout


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


@pytest.mark.parametrize("index", range(len(readme_blocks())))
def test_each_readme_command_block_runs_as_written(reproduced, index):
    commands, not_run = readme_blocks()[index]
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
