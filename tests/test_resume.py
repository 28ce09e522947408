"""Fault injection: preprocess and train killed under `dvc repro` at a random point, then rerun,
give byte-identical features and the same model as a run that was never interrupted."""

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import DVC, dvc, dvc_env, pipeline_project, stages_run

pytestmark = pytest.mark.slow

# The kill points are drawn from this seed, so a failure replays; WHISPER_KO_KILL_SEED=N draws others.
KILL_SEED = int(os.environ.get("WHISPER_KO_KILL_SEED", "0"))


def files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def quality(project: Path) -> dict:
    return json.loads((project / "metrics/benchmark.json").read_text())


def kill_when(project: Path, ready, timeout: float = 300) -> None:
    """Run `dvc repro` and SIGKILL it and every process it started as soon as `ready()` holds."""
    proc = subprocess.Popen(
        [*DVC, "repro"],
        cwd=project,
        env=dvc_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "dvc repro ended before the kill"
        assert time.monotonic() < deadline, "the kill point never came"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_killed_preprocess_and_train_resume_to_the_same_result(
    reproduced_pipeline, sample_corpus, tiny_model, tmp_path
):
    uninterrupted = reproduced_pipeline  # the same params, never interrupted
    rng = random.Random(KILL_SEED)
    project = pipeline_project(tmp_path, sample_corpus, tiny_model)
    features = project / "data/features/train"
    total = len(list((uninterrupted / "data/features/train").glob("*.idx.npz")))
    finished_before_kill = rng.randint(1, total // 2)
    kill_when(project, lambda: len(list(features.glob("*.idx.npz"))) >= finished_before_kill)

    checkpoint = project / "checkpoints/train/checkpoint-2/trainer_state.json"
    kill_when(project, lambda: checkpoint.is_file() and not time.sleep(rng.uniform(0, 0.5)))
    assert not (project / "models/finetuned").exists()

    out = dvc(project, "repro")
    assert stages_run(out) == {"train", "benchmark"}, out
    assert "resuming from" in out and "checkpoint-2" in out
    assert "missing keys" not in out  # the tied output projection is not a lost weight
    assert files(project / "data/features") == files(uninterrupted / "data/features")
    # the rerun after the kill computed only what the killed run had not finished
    report = json.loads((project / "reports/preprocess.json").read_text())["train"]
    speed = json.loads((project / "metrics/speed/preprocess.json").read_text())["train"]
    assert 0 < speed["processed_now"] <= report["manifest"] - 4 * finished_before_kill
    assert quality(project) == quality(uninterrupted)
    trained = [json.loads((p / "models/finetuned/training_summary.json").read_text()) for p in (project, uninterrupted)]
    for key in ("global_steps", "best_step", "best_val_cer_nospace", "samples_seen"):
        assert trained[0][key] == trained[1][key], key
    assert trained[0]["train_loss"] == pytest.approx(trained[1]["train_loss"], rel=1e-6)  # the whole run's
    curves = [json.loads((p / "dvclive/metrics.json").read_text())["eval"] for p in (project, uninterrupted)]
    assert curves[0] == curves[1]
