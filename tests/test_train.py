"""Training on the tiny model: methods, resume, generation config, DDP, bad input."""

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from transformers import WhisperForConditionalGeneration, WhisperProcessor, pipeline

from conftest import QUICK_TRAIN, make_project, training_paths
from whisper_ko import shards
from whisper_ko.collate import Collator
from whisper_ko.config import Discover, Model, Preprocess, Train
from whisper_ko.discover import discover
from whisper_ko.preprocess import preprocess_split
from whisper_ko.training import TrainingError, apply_method, finetune, log_line, trainer_kwargs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def features(sample_corpus, tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    splits, _ = discover(Discover(root=str(sample_corpus), val_fraction=0.2, seed=0, workers=1))
    for split, rows in (("train", splits["train"][:16]), ("val", splits["val"][:6])):
        preprocess_split(rows, root / split, Model(base=str(tiny_model)), Preprocess(shard_size=8, workers=1))
    return root


def train_config(tmp_path, **overrides) -> Train:
    """Quick settings writing under tmp_path, parsed as the stage parses params.yaml."""
    values = {
        "eval_steps": 2,
        "eval_max_samples": 4,
        "eval_max_new_tokens": 12,
        "early_stopping_patience": None,
        **QUICK_TRAIN,
        **overrides,
    }
    return Train(**values)


def saved_summary(tmp_path) -> dict:
    return json.loads((tmp_path / "out" / "training_summary.json").read_text())


def run(features, tiny_model, tmp_path, log=None, **overrides):
    return finetune(
        Model(base=str(tiny_model)),
        train_config(tmp_path, **overrides),
        training_paths(features, tmp_path),
        log=log or (lambda _: None),
    )


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
    # the val loop rate beside CER: a looping checkpoint shows in the curves
    loops = (curves / "eval" / "share_loops.tsv").read_text().splitlines()
    assert loops[0] == "step\tshare_loops" and len(loops) == 3 and all(0 <= float(r.split()[1]) <= 1 for r in loops[1:])
    assert (curves / "train" / "loss.tsv").exists()


def test_lora_is_merged_into_a_plain_checkpoint(features, tiny_model, tmp_path):
    run(
        features,
        tiny_model,
        tmp_path,
        method="lora",
        lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
    )
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


def uncomplete(ckpt):
    """The checkpoint directory as a kill before the run completed leaves it: no result, no mark."""
    marker = json.loads((ckpt / "run.json").read_text())
    assert set(marker.pop("completed")) == {"speed", "log_history"}
    (ckpt / "run.json").write_text(json.dumps(marker))
    shutil.rmtree(ckpt / "final")


def outputs_removed_as_dvc_does(tmp_path):
    for name in ("out", "dvclive", "reports"):
        shutil.rmtree(tmp_path / name, ignore_errors=True)


def test_rerun_after_a_kill_resumes_from_the_last_complete_checkpoint_and_changed_params_start_fresh(
    features, tiny_model, tmp_path
):
    """A checkpoint is resumed from only with its weights, optimizer and scheduler state and the
    Trainer's state: without model.safetensors every resume raised, without optimizer.pt the Trainer
    resumed silently with a fresh AdamW (and without scheduler.pt, with a restarted schedule)."""
    messages = []
    run(features, tiny_model, tmp_path, max_steps=10, save_total_limit=None)
    ckpt = tmp_path / "ckpt"
    assert sorted(p.name for p in ckpt.glob("checkpoint-*")) == [f"checkpoint-{s}" for s in (10, 2, 4, 6, 8)]
    # killed while the step-10 checkpoint was being written (the Trainer writes trainer_state.json
    # last), before the run's result and completion mark; earlier checkpoints damaged otherwise
    uncomplete(ckpt)
    lost = {4: "model.safetensors", 6: "optimizer.pt", 8: "scheduler.pt", 10: "trainer_state.json"}
    for step, name in lost.items():
        (ckpt / f"checkpoint-{step}" / name).unlink()
    outputs_removed_as_dvc_does(tmp_path)
    summary = run(features, tiny_model, tmp_path, log=messages.append, max_steps=10, save_total_limit=None)
    for step, name in lost.items():
        assert f"{ckpt / f'checkpoint-{step}'} lacks {name}: passed over, resuming from an earlier one" in messages
    assert f"resuming from {ckpt / 'checkpoint-2'}" in messages and summary["global_steps"] == 10
    # the curves include the steps before the kill, replayed from the checkpoint's log history
    loss = (tmp_path / "dvclive/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in loss[1:]] == [str(step) for step in range(1, 11)]
    marker = json.loads((ckpt / "run.json").read_text())
    (ckpt / "run.json").write_text(json.dumps({"fingerprint": marker["fingerprint"]}))
    run(features, tiny_model, tmp_path, log=messages.append, learning_rate=5e-4, max_steps=10, save_total_limit=None)
    assert "starting fresh (parameters or data changed)" in " ".join(messages[-12:])


def test_a_completed_run_is_published_again_never_retrained(features, tiny_model, tmp_path, monkeypatch):
    """Whatever fails after the run's result is saved (a kill before DVC commits, a full disk while
    publishing, torchrun by hand before `dvc repro`), the rerun publishes that result."""
    from whisper_ko import training

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(training, "publish", disk_full)
    with pytest.raises(OSError, match="No space left"):
        run(features, tiny_model, tmp_path)
    monkeypatch.undo()
    first = weights(tmp_path / "ckpt/final")
    curves = (tmp_path / "dvclive/plots/metrics/eval/cer_nospace.tsv").read_text()
    outputs_removed_as_dvc_does(tmp_path)
    messages = []
    summary = run(features, tiny_model, tmp_path, log=messages.append)
    result = tmp_path / "ckpt/final"
    assert messages == [
        f"this run was completed before ({result}, same params and data): publishing it, not retraining"
    ]
    assert summary["global_steps"] == 4 and summary == {**saved_summary(tmp_path), "speed": summary["speed"]}
    assert summary["speed"]["steps_s"] > 0  # the completed run's own record, not a new one
    again = weights(tmp_path / "out")
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert (tmp_path / "dvclive/plots/metrics/eval/cer_nospace.tsv").read_text() == curves


def test_bad_input_fails_before_training(features, tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="preprocess"):
        finetune(Model(base=str(tiny_model)), train_config(tmp_path), training_paths(tmp_path / "none", tmp_path))
    with pytest.raises(TrainingError, match=r"<|xx|>"):
        finetune(Model(base=str(tiny_model), language="xx"), train_config(tmp_path), training_paths(features, tmp_path))
    assert not (tmp_path / "ckpt").exists()


def stage_project(root, features, tiny_model, **train):
    """A work directory for `whisper-ko train`: params with quick settings, the features linked in."""
    quick = {**QUICK_TRAIN, "method": "full", "eval_steps": 2, "eval_max_samples": 4, "eval_max_new_tokens": 12}
    params = {
        "model": {"base": str(tiny_model)},
        "train": {**quick, **train},
        "paths": {"checkpoints": str(root / "ckpt"), "model": str(root / "out")},
    }
    make_project(root, params=params)
    (root / "data").mkdir()
    (root / "data" / "features").symlink_to(features)
    return root


def train_stage(*launch, cwd, env=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, *launch, "-m", "whisper_ko.stages.train"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finished(proc):
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    return output


def test_two_process_ddp_on_cpu(features, tiny_model, tmp_path):
    project = stage_project(tmp_path, features, tiny_model, nproc_per_node=2)
    # Another run on this host holds the port this environment gives torchrun (PET_MASTER_PORT, the
    # variable behind --master_port): the relaunch's --standalone rendezvous picks a free port instead.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        finished(train_stage(cwd=project, env={"PET_MASTER_PORT": str(taken.getsockname()[1])}))
    summary = json.loads((tmp_path / "out" / "training_summary.json").read_text())
    # two processes, 4 per device: each optimizer step sees 8 utterances, so 4 steps cover 2 epochs of 16
    assert summary["global_steps"] == 4 and summary["samples_seen"] == 32 and summary["world_size"] == 2


def test_the_documented_multi_node_command_trains_like_one_process_with_the_same_global_batch(
    features, tiny_model, tmp_path
):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nodes = stage_project(tmp_path / "nodes", features, tiny_model)  # nproc_per_node: 1, per device 4
    # As docs/training.md writes it, with two nodes on the loopback address and one process each.
    launches = [
        train_stage(
            "-m",
            "torch.distributed.run",
            "--nnodes",
            "2",
            "--node_rank",
            str(rank),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(port),
            "--nproc_per_node",
            "1",
            cwd=nodes,
        )
        for rank in (0, 1)
    ]
    for launch in launches:
        finished(launch)
    single = stage_project(tmp_path / "single", features, tiny_model, per_device_train_batch_size=8)
    finished(train_stage(cwd=single))

    two = json.loads((nodes / "out" / "training_summary.json").read_text())
    one = json.loads((single / "out" / "training_summary.json").read_text())
    assert (two["world_size"], one["world_size"]) == (2, 1)
    for key in ("global_steps", "samples_seen", "epochs", "train_utterances"):
        assert two[key] == one[key], key
    assert list((nodes / "out").iterdir()) and not (nodes / "out-1").exists()
    assert sorted(p.name for p in (nodes / "ckpt").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]


# Each rank of a torchrun launch claims the checkpoint directory as finetune does, over the three
# states a rerun can find; writes what it saw to rank-N.json (the ranks' stdout interleaves).
CLAIM = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from accelerate import PartialState
    from whisper_ko.checkpoints import CHECKPOINT_FILES, mark_completed
    from whisper_ko.training import claim_checkpoints

    state = PartialState(cpu=True)
    directory = Path(sys.argv[1])
    seen = {}
    for case, fingerprint in (("fresh", "a"), ("interrupted", "a"), ("completed", "a")):
        if case == "interrupted" and state.is_main_process:
            (directory / "checkpoint-2").mkdir()
            for names in CHECKPOINT_FILES:  # a complete checkpoint
                (directory / "checkpoint-2" / names[0]).write_text("{}")
        if case == "completed" and state.is_main_process:  # its result lost: not reusable
            mark_completed(directory, {}, [])
        state.wait_for_everyone()
        messages = []
        resume = claim_checkpoints(directory, fingerprint, messages.append)
        seen[case] = {"resume": resume, "messages": messages, "marker": (directory / "run.json").read_text()}
        state.wait_for_everyone()
    Path(f"rank-{state.process_index}.json").write_text(json.dumps({"rank": state.process_index, **seen}))
""")


def test_only_the_main_rank_clears_and_marks_the_checkpoint_directory(tmp_path):
    (tmp_path / "claim.py").write_text(CLAIM)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "claim.py",
            str(tmp_path / "ckpt"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1]
    main, other = ranks
    checkpoint = str(tmp_path / "ckpt" / "checkpoint-2")
    # both ranks agree on where to resume; only the main process said (and did) anything
    assert [r["fresh"]["resume"] for r in ranks] == [None, None]
    assert [r["interrupted"]["resume"] for r in ranks] == [checkpoint, checkpoint]
    assert [r["completed"]["resume"] for r in ranks] == [None, None]
    assert main["interrupted"]["messages"] == [f"resuming from {checkpoint}"]
    assert main["completed"]["messages"] == [
        f"starting fresh (the completed run's result is incomplete): clearing {tmp_path / 'ckpt'}"
    ]
    assert all(not other[case]["messages"] for case in ("fresh", "interrupted", "completed"))
    assert json.loads(main["completed"]["marker"]) == {"fingerprint": "a"}  # cleared, marked once
    assert not (tmp_path / "ckpt" / "checkpoint-2").exists()


def test_bf16_on_cpu_trains_and_evaluates_under_autocast(features, tiny_model, tmp_path):
    """The first evaluation's generate() ran the encoder outside autocast: bf16 features met fp32 conv1
    weights ("Input type (c10::BFloat16) and bias type (float) should be the same")."""
    summary = run(features, tiny_model, tmp_path, precision="bf16")
    assert (summary["precision"], summary["attention"], summary["global_steps"]) == ("bf16", "sdpa", 4)
    assert math.isfinite(summary["train_loss"]) and summary["best_val_cer_nospace"] is not None
    curves = tmp_path / "dvclive" / "plots" / "metrics"
    for curve in ("eval/cer.tsv", "eval/loss.tsv"):  # one row per evaluation
        rows = [line.split("\t") for line in (curves / curve).read_text().splitlines()[1:]]
        assert [row[0] for row in rows] == ["2", "4"] and all(math.isfinite(float(row[1])) for row in rows), curve
    speed = summary["speed"]
    assert speed["peak_memory_gib"] > 0 and speed["peak_memory_of"] == "CPU process, resident"
    assert not {"wall_time_s", "samples_per_s", "peak_memory_gib"} & set(saved_summary(tmp_path))


def test_a_float16_checkpoint_trains_fp32_master_weights(features, tiny_model, tmp_path):
    """large-v3 and turbo declare float16; transformers 5 would load them so and train pure fp16."""
    half = tmp_path / "half"
    WhisperForConditionalGeneration.from_pretrained(tiny_model).half().save_pretrained(half)
    WhisperProcessor.from_pretrained(tiny_model).save_pretrained(half)
    assert json.loads((half / "config.json").read_text())["dtype"] == "float16"
    summary = run(features, half, tmp_path)
    assert math.isfinite(summary["train_loss"])
    assert {tensor.dtype for tensor in weights(tmp_path / "out").values()} == {torch.float32}


@pytest.mark.parametrize("method", ["full", "lora", "freeze_encoder"])
def test_every_trainable_parameter_gets_a_gradient(features, tiny_model, method):
    """DDP runs with find_unused_parameters=False: a trainable parameter left without a gradient
    would stall the next step's reduction."""
    config = Train(**{"method": method, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}})
    model = apply_method(WhisperForConditionalGeneration.from_pretrained(tiny_model), config)
    data = shards.open(features / "train")
    batch = Collator(model.config.decoder_start_token_id)([data[i] for i in range(4)])
    model(**batch).loss.backward()
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and [name for name, p in trainable.items() if p.grad is None] == []


def test_trainer_settings_on_a_gpu_host():
    kwargs = trainer_kwargs(Train(learning_rate=1e-5), "checkpoints/train", "bf16", cuda=True)
    assert kwargs["ddp_find_unused_parameters"] is False and kwargs["optim"] == "adamw_torch_fused"
    assert (kwargs["bf16"], kwargs["fp16"], kwargs["learning_rate"]) == (True, False, 1e-5)
    # TF32 is set by runtime.set_matmul_precision alone: TrainingArguments' tf32 mixes torch's APIs
    assert "tf32" not in kwargs and "use_cpu" not in kwargs


def test_a_gpu_host_whose_torch_cannot_use_cuda_stops_before_training(features, tiny_model, tmp_path, monkeypatch):
    project = stage_project(tmp_path / "project", features, tiny_model)
    driver = tmp_path / "bin" / "nvidia-smi"
    driver.parent.mkdir()
    driver.write_text("#!/bin/sh\necho 'NVIDIA-SMI 580.65'\n")
    driver.chmod(0o755)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    proc = train_stage(cwd=project, env={"PATH": f"{driver.parent}{os.pathsep}{os.environ['PATH']}"})
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "Traceback" not in output
    assert output.strip().splitlines()[-1].startswith("Error: nvidia-smi is present but torch")
    assert not (tmp_path / "project" / "ckpt").exists()  # nothing touched


def test_an_evaluation_logs_one_readable_line():
    logs = {"eval_loss": 1.1099, "eval_cer": 0.4, "eval_cer_nospace": 0.45, "eval_wer": 0.6, "epoch": 1.0}
    assert log_line({**logs, "eval_peak_memory_gib": 2.44}, 17, 34) == (
        "step 17/34 (epoch 1.00): validation no-space CER 45.00%, CER 40.00%, WER 60.00%, loss 1.110, "
        "peak memory 2.4 GiB"
    )
    assert log_line({"loss": 2.3866, "learning_rate": 0.0002, "epoch": 0.3}, 10, 34) == (
        "step 10/34: loss 2.387, learning rate 2.00e-04"
    )


@pytest.mark.parametrize("workers", [0, 1])
def test_a_corrupt_record_stops_training_in_one_line_naming_shard_and_utterance(
    features, tiny_model, tmp_path, workers
):
    """A flipped byte changed a record's features silently, or crashed with zstd's own error."""
    copy = tmp_path / "features"
    shutil.copytree(features, copy)
    data = copy / "train" / "shard-00001.bin"
    damaged = bytearray(data.read_bytes())
    damaged[len(damaged) // 2] ^= 0x04
    data.write_bytes(damaged)
    with pytest.raises(shards.CorruptShard) as failure:
        finetune(
            Model(base=str(tiny_model)),
            train_config(tmp_path, dataloader_num_workers=workers),
            training_paths(copy, tmp_path / "run"),
            log=lambda _: None,
        )
    message = str(failure.value)  # through a DataLoader worker too, where torch wraps it in a traceback
    assert message.startswith(f"feature shard {copy / 'train' / 'shard-00001'} is corrupt (record ")
    assert "fails its checksum): rerun the preprocess stage" in message and "\n" not in message
    assert not (tmp_path / "run" / "out").exists()


def test_packed_windows_train_and_speed_is_reported_in_utterances(sample_corpus, tiny_model, tmp_path):
    """A packed window counts each of its utterances: in the summary, and in the speed record beside windows/s."""
    from whisper_ko.config import Pack

    splits, _ = discover(Discover(root=str(sample_corpus), val_fraction=0.2, seed=0, workers=1))
    packed = Preprocess(workers=1, pack=Pack(by="session", timestamps=0.5, single=0.25))
    preprocess_split(splits["train"][:24], tmp_path / "f" / "train", Model(base=str(tiny_model)), packed, augment=True)
    preprocess_split(splits["val"][:6], tmp_path / "f" / "val", Model(base=str(tiny_model)), packed)
    summary = run(tmp_path / "f", tiny_model, tmp_path, max_steps=-1, num_train_epochs=2, eval_steps=None)
    data = shards.open(tmp_path / "f" / "train")
    assert summary["train_records"] == len(data) < summary["train_utterances"] == data.utterances()
    assert summary["utterances_seen"] == 2 * data.utterances() and summary["samples_seen"] == 2 * len(data)
    speed = summary["speed"]
    assert speed["utterances_per_s"] == pytest.approx(speed["samples_per_s"] * data.utterances() / len(data), rel=0.02)
    assert 0 < speed["steps_s"] < speed["wall_time_s"] and speed["step_utterances_per_s"] > speed["utterances_per_s"]
    assert math.isfinite(summary["train_loss"])
