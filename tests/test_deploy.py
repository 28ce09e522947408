"""The export stage's library on the tiny model: what a deployment needs survives conversion or the
export fails; LoRA is merged before conversion; every saved model and checkpoint carries the
preprocessor_config.json converters read. The real checkpoint's parity: tests/test_real_model.py."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import WhisperForConditionalGeneration

from conftest import training_paths
from whisper_ko import checks, deploy
from whisper_ko.config import Discover, Model, Preprocess, Train
from whisper_ko.discover import discover
from whisper_ko.preprocess import preprocess_split
from whisper_ko.training import finetune

pytestmark = pytest.mark.models  # decodes, trains or converts models: not in make test-fast

QUICK = {"max_steps": 2, "eval_steps": 2, "eval_max_samples": 2, "eval_max_new_tokens": 4, "logging_steps": 1}


def train(sample_corpus, model: Path, tmp_path: Path, **overrides) -> Path:
    """A two-step fine-tune of `model` on a few sample-corpus clips; returns the saved model."""
    splits, _ = discover(Discover(root=str(sample_corpus), val_fraction=0.2, seed=0, workers=1))
    features = tmp_path / "features"
    n_mels = WhisperForConditionalGeneration.from_pretrained(model).config.num_mel_bins
    for split, rows in (("train", splits["train"][:8]), ("val", splits["val"][:2])):
        preprocess_split(rows, features / split, Model(base=str(model)), Preprocess(shard_size=8, workers=1))
    paths = training_paths(features, tmp_path)
    config = Train(**{"learning_rate": 1e-2, "per_device_train_batch_size": 4, **QUICK, **overrides})
    finetune(Model(base=str(model)), config, paths, log=lambda _: None)
    assert n_mels == json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())["feature_size"]
    return tmp_path / "out"


def encoder_output(model: WhisperForConditionalGeneration, features: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model.model.encoder(torch.from_numpy(features)).last_hidden_state.numpy()


def test_a_lora_fine_tune_is_exported_merged(sample_corpus, tiny_model, tmp_path):
    """LoRA on q_proj/v_proj changes the encoder: the export's encoder computes what the merged
    model's does, not what the base's does."""
    import ctranslate2

    out = train(sample_corpus, tiny_model, tmp_path, method="lora")
    assert not (out / "adapter_config.json").exists()
    exported = tmp_path / "ct2"
    deploy.export(out, exported, "float32")
    features = np.random.default_rng(0).standard_normal((2, 80, 3000)).astype(np.float32)
    ct2 = ctranslate2.models.Whisper(str(exported), device="cpu", compute_type="float32")
    converted = np.array(ct2.encode(ctranslate2.StorageView.from_array(features), to_cpu=True))
    merged = encoder_output(WhisperForConditionalGeneration.from_pretrained(out).eval(), features)
    base = encoder_output(WhisperForConditionalGeneration.from_pretrained(tiny_model).eval(), features)
    assert np.abs(converted - merged).max() < 1e-3
    assert np.abs(converted - base).max() > 100 * np.abs(converted - merged).max()


def test_every_checkpoint_deploys_as_it_is_with_ctranslate2s_documented_conversion(sample_corpus, tmp_path):
    """transformers 5 writes no preprocessor_config.json; faster-whisper's documented conversion
    copies it, and without it assumes 80 mel bins: a 128-mel model (large-v3) would deploy broken."""
    from faster_whisper import WhisperModel

    from whisper_ko_fixtures import sample_corpus as corpus
    from whisper_ko_fixtures import tiny_model

    wide = tiny_model.build(tmp_path / "tiny-128", n_mels=128, seed=0, texts=corpus.training_texts())
    out = train(sample_corpus, wide, tmp_path)
    checkpoint = tmp_path / "ckpt" / "checkpoint-2"
    for directory in (out, checkpoint):
        assert json.loads((directory / "preprocessor_config.json").read_text())["feature_size"] == 128
    converter = Path(sys.executable).parent / "ct2-transformers-converter"
    for directory in (out, checkpoint):
        converted = tmp_path / f"converted-{directory.name}"
        command = [str(converter), "--model", str(directory), "--output_dir", str(converted)]
        proc = subprocess.run(
            [*command, "--copy_files", "tokenizer.json", "preprocessor_config.json"], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert WhisperModel(str(converted), device="cpu").feature_extractor.mel_filters.shape[0] == 128


def test_an_export_that_lost_what_a_deployment_needs_fails(tiny_model, tmp_path):
    exported = tmp_path / "ct2"
    record = deploy.export(tiny_model, exported, "int8")
    assert record["n_mels"] == 80 and record["quantization"] == "int8" and checks.is_ctranslate2(exported)
    assert checks.export_source(str(exported)) == str(tiny_model)

    config = json.loads((exported / "config.json").read_text())
    (exported / "config.json").write_text(json.dumps({**config, "suppress_ids": []}))
    with pytest.raises(deploy.ExportError, match="suppress_ids is \\[\\] after conversion, the source has \\["):
        deploy.check(tiny_model, exported)
    (exported / "config.json").write_text(json.dumps(config))
    extractor = json.loads((exported / "preprocessor_config.json").read_text())
    (exported / "preprocessor_config.json").write_text(json.dumps({**extractor, "feature_size": 128}))
    with pytest.raises(deploy.ExportError, match="makes 128 mel bins, the model takes 80"):
        deploy.check(tiny_model, exported)


def test_sources_an_export_cannot_use_fail_in_one_line(tiny_model, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(deploy.ExportError, match="is a LoRA adapter: merge it into its base first"):
        deploy.export(adapter, tmp_path / "out", "int8")
    bare = tmp_path / "bare"
    shutil.copytree(tiny_model, bare)
    (bare / "preprocessor_config.json").unlink()
    with pytest.raises(deploy.ExportError, match=r"lacks preprocessor_config\.json: save the model with its processor"):
        deploy.export(bare, tmp_path / "out", "int8")
    assert not (tmp_path / "out").exists()
