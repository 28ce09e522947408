"""presets/*.yaml and `make preset`: sizes for real checkpoints that the stages accept as they are."""

import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from whisper_ko import config

sys.path.insert(0, str(REPO / "tools"))
import preset as preset_tool

PRESETS = sorted((REPO / "presets").glob("*.yaml"))


def test_there_is_a_preset_per_real_model():
    assert {p.stem for p in PRESETS} == {"whisper-large-v3", "whisper-large-v3-turbo", "whisper-small"}


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_a_preset_replaces_only_its_sections_and_the_stages_accept_it(preset, tmp_path):
    original = (REPO / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(preset_tool.apply(original, preset.read_text()))
    merged = yaml.safe_load((tmp_path / "params.yaml").read_text())
    before, given = yaml.safe_load(original), yaml.safe_load(preset.read_text())
    assert set(given) == {"model", "train", "benchmark"} and set(merged) == set(before)
    for section in merged:
        assert merged[section] == (given if section in given else before)[section], section
    # the stages' own parsing, types and ranges included, before any data is read
    train, model, bench = config.load(tmp_path / "params.yaml", "train", "model", "benchmark")
    assert train.nproc_per_node == 8 and train.precision == "auto" and train.learning_rate <= 2e-5
    assert model.attention == "auto" and model.base.startswith("openai/whisper-") and bench.batch_size is None
    # activation checkpointing exactly where the estimated memory needs it
    assert train.gradient_checkpointing == ("large" in preset.stem)


def test_make_preset_rewrites_params_and_keeps_the_corpus_settings(tmp_path):
    params_file = tmp_path / "params.yaml"
    params_file.write_text((REPO / "params.yaml").read_text().replace("root: data/sample", "root: /data/aihub"))
    out = subprocess.run(
        [sys.executable, str(REPO / "tools/preset.py"), str(REPO / "presets/whisper-large-v3.yaml"), str(params_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == (
        f"{params_file}: model, train, benchmark from {REPO / 'presets/whisper-large-v3.yaml'}; "
        "set discover.root to your corpus"
    )
    text = params_file.read_text()
    assert "root: /data/aihub" in text and "base: openai/whisper-large-v3\n" in text
    assert "gradient_checkpointing: true   # without it only batch <= 15 fits" in text  # the preset's comments kept
    with pytest.raises(ValueError, match="sections the params file lacks: extra"):
        preset_tool.apply(text, "extra:\n  a: 1\n")
