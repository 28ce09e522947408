"""A stage writes only where it may: a folder a `paths.*` entry names survives every stage unless
the pipeline made it, and a stage refuses in one line before any audio is read or model loaded."""

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import make_project, stage
from whisper_ko.config import Paths

FIELDS = list(Paths.model_fields)
# What each stage writes, by paths entry; the stages named first make what the later ones read.
WRITERS = {
    "listing": ["corpus"],
    "manifests": ["discover"],
    "features": ["preprocess"],
    "model": ["train"],
    "checkpoints": ["train"],
    "curves": ["train"],
    "export": ["export"],
    "metrics": ["benchmark"],
    "reports": ["discover"],  # a folder stages write files into: theirs are added, nothing removed
    "speed": ["discover", "preprocess"],
}
REFUSED = {"listing", "manifests", "features", "model", "checkpoints", "curves", "export", "metrics"}


def project(tmp_path, sample_corpus, tiny_model, **paths) -> Path:
    """A work directory with params for the sample corpus and the tiny model, `paths` changed."""
    return make_project(
        tmp_path,
        params={
            "paths": paths,
            "discover": {"root": str(sample_corpus), "workers": 1, "val_fraction": 0.2},
            "model": {"base": str(tiny_model)},
            "preprocess": {"workers": 1},
        },
    )


def test_every_paths_entry_is_covered():
    assert set(WRITERS) == set(FIELDS)


@pytest.mark.parametrize("field", FIELDS)
def test_a_user_folder_named_by_any_path_survives_every_stage(field, tmp_path, monkeypatch, sample_corpus, tiny_model):
    """train cleared a user's folder given as paths.checkpoints, and export deleted the fine-tune
    it converted when paths.export held it; DVCLive clears params.yaml and dvc.yaml in its folder."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "params.yaml").write_text("my own notes\n")  # a name DVCLive would clear in paths.curves
    monkeypatch.chdir(project(tmp_path, sample_corpus, tiny_model, **{field: "mine"}))
    for name in WRITERS[field]:
        result = CliRunner().invoke(stage(name).main, [])
        if field in REFUSED:
            assert result.exit_code == 1 and result.output.startswith(f"Error: paths.{field} mine "), result.output
            assert len(result.output.strip().splitlines()) == 1
        else:
            assert result.exit_code == 0, result.output
    assert (mine / "params.yaml").read_text() == "my own notes\n"


@pytest.mark.parametrize(
    ("name", "what"),
    [("preprocess", "paths.features data/features: the feature shards"), ("train", "paths.checkpoints")],
)
def test_a_disk_too_small_for_the_outputs_stops_the_stage_before_the_work(
    name, what, tmp_path, monkeypatch, sample_corpus, tiny_model
):
    monkeypatch.chdir(project(tmp_path, sample_corpus, tiny_model))
    assert CliRunner().invoke(stage("discover").main, []).exit_code == 0
    full = shutil.disk_usage(tmp_path)._replace(free=10_000)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: full)
    result = CliRunner().invoke(stage(name).main, [])
    assert result.exit_code == 1 and result.output.startswith(f"Error: {what}"), result.output
    assert "GB, and its disk has 0.0 GB free: free some space" in result.output
    assert not (tmp_path / "data/features").exists() and not (tmp_path / "checkpoints").exists()


def test_a_speed_path_that_cannot_be_written_stops_train_before_the_model_loads(
    tmp_path, monkeypatch, sample_corpus, tiny_model
):
    """An unwritable paths.speed failed after training, which the next run then repeated."""
    monkeypatch.chdir(project(tmp_path, sample_corpus, tiny_model, speed="speed.txt"))
    (tmp_path / "speed.txt").write_text("a file where the speed folder goes\n")
    result = CliRunner().invoke(stage("train").main, [])
    assert result.exit_code == 1 and result.output.startswith("Error: paths.speed speed.txt: "), result.output
    assert "is a file, not a folder" in result.output and not (tmp_path / "checkpoints").exists()


def test_the_check_stage_asks_of_benchmark_models_what_the_benchmark_needs(tmp_path, tiny_model, sample_corpus):
    """A training checkpoint (weights, no processor) is scored with model.base's processor: the check
    must pass it, and still stop a directory without weights."""
    from whisper_ko import checks

    checkpoint, empty = tmp_path / "checkpoint-4", tmp_path / "no-weights"
    shutil.copytree(tiny_model, checkpoint, ignore=shutil.ignore_patterns("*token*", "*processor*"))
    shutil.copytree(tiny_model, empty, ignore=shutil.ignore_patterns("*.safetensors"))
    paths = Paths(**{f: str(tmp_path / "out" / f) for f in FIELDS})
    checks.require_pipeline(paths, str(sample_corpus), str(tiny_model), {"ckpt": str(checkpoint)})
    with pytest.raises(checks.ModelFilesError, match=r"benchmark\.models\.bad .*no-weights lacks weights"):
        checks.require_pipeline(paths, str(sample_corpus), str(tiny_model), {"bad": str(empty)})
