"""Training on the tiny model: methods, resume, generation config, DDP, bad input."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import WhisperForConditionalGeneration, pipeline

from conftest import REPO
from whisper_ko.discover import discover
from whisper_ko.preprocess import Settings, preprocess_split
from whisper_ko.training import TrainConfig, finetune

pytestmark = pytest.mark.slow
QUICK = {"max_steps": 4, "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8, "learning_rate": 1e-3,
         "logging_steps": 1, "seed": 0}


@pytest.fixture(scope="module")
def features(sample_corpus, tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    splits, _ = discover(sample_corpus, val_fraction=0.2, seed=0, workers=1)
    for split, rows in (("train", splits["train"][:16]), ("val", splits["val"][:6])):
        preprocess_split(rows, root / split, Settings(model=str(tiny_model)), shard_size=8, workers=1)
    return root


def run(features, tiny_model, tmp_path, log=None, **overrides):
    config = TrainConfig(
        output_dir=str(tmp_path / "out"), checkpoint_dir=str(tmp_path / "ckpt"), dvclive_dir=str(tmp_path / "dvclive"),
        eval_steps=2, eval_max_samples=4, generation_max_length=12, early_stopping_patience=None,
        **{k: v for k, v in overrides.items() if k in TrainConfig.__dataclass_fields__},
    )
    trainer_args = {**QUICK, **{k: v for k, v in overrides.items() if k not in TrainConfig.__dataclass_fields__}}
    return finetune(base=str(tiny_model), train_dir=features / "train", val_dir=features / "val", language="ko",
                    task="transcribe", config=config, trainer_args=trainer_args, log=log or (lambda _: None))


def weights(directory):
    return load_file(str(directory / "model.safetensors"))


def test_full_finetune_saves_a_plain_whisper_with_the_base_generation_config(features, tiny_model, tmp_path):
    summary = run(features, tiny_model, tmp_path)
    out = tmp_path / "out"
    assert summary["global_steps"] == 4 and summary["best_step"] in (2, 4)
    assert json.loads((out / "training_summary.json").read_text())["method"] == "full"
    model = WhisperForConditionalGeneration.from_pretrained(out)
    base = WhisperForConditionalGeneration.from_pretrained(tiny_model)
    gen = model.generation_config
    assert gen.language == "ko" and gen.task == "transcribe" and gen.forced_decoder_ids is None
    for name in ("suppress_tokens", "begin_suppress_tokens", "alignment_heads", "lang_to_id"):
        assert getattr(gen, name) == getattr(base.generation_config, name) and getattr(gen, name)
    asr = pipeline("automatic-speech-recognition", model=str(out))
    assert isinstance(asr(torch.zeros(16000).numpy(), generate_kwargs={"max_new_tokens": 4})["text"], str)
    curves = tmp_path / "dvclive" / "plots" / "metrics"
    assert (curves / "eval" / "cer_nospace.tsv").read_text().count("\n") == 3  # header + steps 2 and 4
    assert (curves / "train" / "loss.tsv").exists()


def test_lora_is_merged_into_a_plain_checkpoint(features, tiny_model, tmp_path):
    run(features, tiny_model, tmp_path, method="lora", lora={"r": 4, "alpha": 8, "dropout": 0.0,
                                                              "target_modules": ["q_proj", "v_proj"]})
    tuned, base = weights(tmp_path / "out"), weights(tiny_model)
    assert not any("lora" in k for k in tuned) and set(tuned) == set(base)
    q = "model.decoder.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(tuned[q], base[q])  # the adapter was merged
    k = "model.decoder.layers.0.self_attn.k_proj.weight"
    assert torch.equal(tuned[k], base[k])  # untargeted modules unchanged


def test_freeze_encoder_changes_only_the_decoder(features, tiny_model, tmp_path):
    run(features, tiny_model, tmp_path, method="freeze_encoder")
    tuned, base = weights(tmp_path / "out"), weights(tiny_model)
    assert all(torch.equal(tuned[k], base[k]) for k in base if k.startswith("model.encoder."))
    assert any(not torch.equal(tuned[k], base[k]) for k in base if k.startswith("model.decoder."))


def test_rerun_after_a_kill_resumes_and_changed_params_start_fresh(features, tiny_model, tmp_path):
    messages = []
    run(features, tiny_model, tmp_path, log=messages.append)
    ckpt = tmp_path / "ckpt"
    assert sorted(p.name for p in ckpt.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    # killed after the step-2 checkpoint: the step-4 one never got written, nor the completion mark
    marker = json.loads((ckpt / "run.json").read_text())
    assert marker.pop("completed") is True
    (ckpt / "run.json").write_text(json.dumps(marker))
    shutil.rmtree(ckpt / "checkpoint-4")
    shutil.rmtree(tmp_path / "dvclive")  # as DVC does before rerunning the stage
    summary = run(features, tiny_model, tmp_path, log=messages.append)
    assert any("resuming from" in m and m.endswith("checkpoint-2") for m in messages)
    assert summary["global_steps"] == 4
    # the curves include the steps before the kill, replayed from the checkpoint's log history
    loss = (tmp_path / "dvclive/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in loss[1:]] == ["1", "2", "3", "4"]
    # a finished run is never "resumed" (it would train nothing): DVC reruns train only on a change
    run(features, tiny_model, tmp_path, log=messages.append)
    assert "starting fresh (the previous run completed)" in messages[-1]
    marker = json.loads((ckpt / "run.json").read_text())
    (ckpt / "run.json").write_text(json.dumps({"fingerprint": marker["fingerprint"]}))
    run(features, tiny_model, tmp_path, log=messages.append, learning_rate=5e-4)
    assert "starting fresh (parameters or data changed)" in messages[-1]


def test_bad_input_fails_before_training(features, tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="preprocess"):
        finetune(base=str(tiny_model), train_dir=tmp_path / "none", val_dir=features / "val", language="ko",
                 task="transcribe", config=TrainConfig(checkpoint_dir=str(tmp_path / "c")), trainer_args=QUICK)
    with pytest.raises(ValueError, match="<|xx|>"):
        finetune(base=str(tiny_model), train_dir=features / "train", val_dir=features / "val", language="xx",
                 task="transcribe", config=TrainConfig(checkpoint_dir=str(tmp_path / "c")), trainer_args=QUICK)
    with pytest.raises(ValueError, match="train.method"):
        TrainConfig(method="qlora")


def test_two_process_ddp_on_cpu(features, tiny_model, tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"]["base"] = str(tiny_model)
    params["train"].update(QUICK, nproc_per_node=2, eval_steps=2, eval_max_samples=4, generation_max_length=12,
                           checkpoint_dir=str(tmp_path / "ckpt"), output_dir=str(tmp_path / "out"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "features").symlink_to(features)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "stages/train.py")], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "training_summary.json").read_text())
    # two processes, 4 per device: each optimizer step sees 8 utterances, so 4 steps cover 2 epochs of 16
    assert summary["global_steps"] == 4 and summary["samples_seen"] == 32
