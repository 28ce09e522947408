"""Shared fixtures: a small synthetic corpus and a tiny Whisper, built once per test session."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

REPO = Path(__file__).resolve().parents[1]
SMALL_CORPUS = {"seed": 0, "n_train": 80, "n_val": 24}


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory) -> Path:
    from whisper_ko import sample_corpus

    out = tmp_path_factory.mktemp("corpus") / "sample"
    sample_corpus.generate(out, **SMALL_CORPUS)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from whisper_ko import sample_corpus, tiny_model

    out = tmp_path_factory.mktemp("model") / "tiny-ko"
    tiny_model.build(out, n_mels=80, seed=0, texts=sample_corpus.training_texts())
    return out


def run_stage(stage: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run `stages/<stage>.py` as DVC would, from `workdir`; fail with its output if it fails."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages" / f"{stage}.py"), *args],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"{stage} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc
