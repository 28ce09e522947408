"""Shared fixtures: a small synthetic corpus and a tiny Whisper, built once per test session."""

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

REPO = Path(__file__).resolve().parents[1]
SMALL_CORPUS = {"seed": 0, "n_train": 80, "n_val": 24}
# Train settings of the tests' quick fine-tunes of the tiny model (each test adds its own).
QUICK_TRAIN = {
    "max_steps": 4,
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 8,
    "learning_rate": 1e-3,
    "logging_steps": 1,
    "seed": 0,
}


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory) -> Path:
    from whisper_ko_fixtures import sample_corpus

    out = tmp_path_factory.mktemp("corpus") / "sample"
    sample_corpus.generate(out, **SMALL_CORPUS)
    return out


@pytest.fixture(scope="session")
def test_rows(sample_corpus) -> list[dict]:
    """The sample corpus's test utterances, as discover lists them."""
    from whisper_ko import discover

    splits, _ = discover.discover(discover.Discover(root=str(sample_corpus), workers=2))
    return splits["test"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from whisper_ko_fixtures import sample_corpus, tiny_model

    out = tmp_path_factory.mktemp("model") / "tiny-ko"
    tiny_model.build(out, n_mels=80, seed=0, texts=sample_corpus.training_texts())
    return out


# Benchmark settings of the tests' pipelines: 12 of the 24 test utterances (all four categories), and
# short outputs: the tiny model loops, and each of the fallback's temperatures would decode a looping
# call window to its 224 tokens again (the benchmark then took a minute where it takes seconds).
QUICK_BENCHMARK = {"max_new_tokens": 16, "max_samples": 12, "long_form": {"max_new_tokens": 16}}


def training_paths(features: Path, root: Path):
    """Where a test's fine-tune reads its shards and writes: every output under `root`, none of
    them (reports, speed) in the repository."""
    from whisper_ko.config import Paths

    return Paths(
        features=str(features),
        model=str(root / "out"),
        checkpoints=str(root / "ckpt"),
        curves=str(root / "dvclive"),
        reports=str(root / "reports"),
        speed=str(root / "speed"),
    )


def stage(name: str):
    """The stage's module (whisper_ko.stages.<name>), for click's CliRunner (and monkeypatch) in a test."""
    return importlib.import_module(f"whisper_ko.stages.{name}")


WHISPER_KO = str(Path(sys.executable).parent / "whisper-ko")  # the installed command, as dvc.yaml runs it


def run_stage(stage: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run `whisper-ko <stage>` as DVC would, from `workdir`; fail with its output if it fails."""
    proc = subprocess.run(
        [WHISPER_KO, stage, *args],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"{stage} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


# ---------------------------------------------------------------- the pipeline under DVC

DVC = [sys.executable, "-m", "dvc"]


def dvc_env() -> dict:
    # stage commands call `python`: make it this interpreter, with the project installed
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def dvc(project: Path, *args: str) -> str:
    proc = subprocess.run([*DVC, *args], cwd=project, capture_output=True, text=True, env=dvc_env())
    assert proc.returncode == 0, f"dvc {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def stages_run(dvc_output: str) -> set[str]:
    return {
        stage for stage in ("discover", "preprocess", "train", "benchmark") if f"Running stage '{stage}'" in dvc_output
    }


def git(project: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=project, check=True, capture_output=True
    )


def make_project(root: Path, files=(), params: dict | None = None, commit: str | None = None) -> Path:
    """The one way tests build a work directory: `files` of this repository copied into `root`
    (folders whole), params.yaml from the repository's with `params` set in it (`merged`), and,
    with `commit`, a git repository with everything committed under that message (branch main)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in files:
        source, dest = REPO / name, root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, dest)
    values = merged(yaml.safe_load((REPO / "params.yaml").read_text()), params or {})
    (root / "params.yaml").write_text(yaml.safe_dump(values, allow_unicode=True, sort_keys=False))
    if commit:
        git(root, "init", "-q", "-b", "main")
        git(root, "add", "-A")
        git(root, "commit", "-qm", commit)
    return root


def merged(values: dict, updates: dict) -> dict:
    """`values` with `updates` set in it, nested sections key by key; benchmark.models, a mapping of
    aliases rather than a section, is set whole."""
    out = dict(values)
    for key, value in updates.items():
        out[key] = merged(out.get(key) or {}, value) if isinstance(value, dict) and key != "models" else value
    return out


# What DVC needs of this repository to run the pipeline in a project.
PIPELINE_FILES = ("dvc.yaml", ".dvcignore", ".dvc/config", "src")


def pipeline_project(root: Path, corpus: Path, model: Path, **sections) -> Path:
    """A git + DVC checkout of the pipeline files in `root` with quick params for the tiny model
    (`sections` update them), committed, not yet run."""
    params = {
        "discover": {"root": str(corpus), "val_fraction": 0.2, "workers": 2},
        "model": {"base": str(model)},
        # one worker and small shards: a row of completions a kill can fall between (test_resume)
        "preprocess": {"workers": 1, "shard_size": 4},
        # bf16 on CPU: the stage trains and evaluates through the same autocast path as on a GPU
        "train": {
            "method": "full",
            "learning_rate": 0.002,  # the tiny model's settings, not the real demo's
            "precision": "bf16",
            "max_steps": 4,
            "per_device_train_batch_size": 8,
            "per_device_eval_batch_size": 8,
            "eval_steps": 2,
            "eval_max_samples": 4,
            "eval_max_new_tokens": 12,
        },
        "benchmark": QUICK_BENCHMARK | {"models": {"base": str(model)}},
    }
    return make_project(root, PIPELINE_FILES, merged(params, sections), commit="pipeline")


@pytest.fixture(scope="session")
def reproduced_pipeline(tmp_path_factory, sample_corpus, tiny_model) -> Path:
    """One `pipeline_project` after `dvc repro` (its log in repro.log), reproduced once for the
    session: tests that change it take a copy (`copy_project`)."""
    root = pipeline_project(tmp_path_factory.mktemp("reproduced"), sample_corpus, tiny_model)
    (root / "repro.log").write_text(dvc(root, "repro"))
    return root


def copy_project(project: Path, dest: Path) -> Path:
    """A copy of a project, its git history, DVC cache and outputs included: DVC finds it as reproduced."""
    shutil.copytree(project, dest, symlinks=True)
    return dest
