"""Verify a GPU host in under ten minutes, offline: the CUDA paths of training and benchmarking,
run for real on a small random Whisper and synthetic audio, then the speed of a large-v3-shaped
decoder. Exits non-zero on any failure; the last thing it prints is a JSON summary (also written
to OUT/gpu_check.json).

    make gpu-check                       # = python tools/gpu_check.py --out gpu-check
    python tools/gpu_check.py --allow-cpu --out /tmp/check   # the CPU-runnable parts (the test suite runs this)

Checks:
1. host: versions, torch's CUDA against the driver, device name and capability, native bf16,
   whether flash-attention-2 loads, the SDPA backends.
2. train, each a few steps with two evaluations: bf16 full, fp16 full, bf16 with activation
   checkpointing, LoRA, freeze_encoder, and a base checkpoint whose config declares float16.
   Asserts a finite loss, eval CER logged, fp32 master weights, the best checkpoint reloaded at the
   end, and that the saved directory generates; records samples/s, peak memory, attention used.
3. with two or more GPUs, the train stage with nproc_per_node 2, fresh and after a completed run.
4. the multi-process benchmark over two models.
5. each preset (presets/*.yaml): training steps of a random model of its shape at its per-GPU
   batch and activation checkpointing, as the trainer takes them (fp32 master weights, bf16
   autocast, fused AdamW): the measured peak memory and samples/s beside the estimates of docs/presets.md.
6. generate() on a random large-v3-shaped model (d_model 1280, 32+32 layers, 128 mels, bf16) at
   batch 16/64/128 after warm-up: encoder ms, ms per decoding step, utterances/s and the implied
   RTFx for 4 s and 10 s clips.
Without a GPU (--allow-cpu) fp16 and the multi-GPU stage are skipped, bf16 runs through CPU
autocast, and the presets and the generate timing use a small shape, so the code paths stay
tested in CI.
"""

import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import click
import numpy as np
import soundfile as sf
import torch
import yaml
from safetensors.torch import load_file
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from whisper_ko import evaluation, inference, runtime, scheduling
from whisper_ko.config import Benchmark, Fallback, LongForm, Model, Paths, Preprocess, Train
from whisper_ko.preprocess import preprocess_split
from whisper_ko.scoring import Scoring
from whisper_ko.training import finetune
from whisper_ko_fixtures import shapes, tiny_model
from whisper_ko_fixtures.sample_corpus import training_texts

REPO = Path(__file__).resolve().parents[1]
# The trained model: whisper-tiny's shape on a GPU (real kernels, seconds per run), smaller on CPU.
GPU_SIZE = {
    "d_model": 384,
    "encoder_layers": 4,
    "decoder_layers": 4,
    "encoder_attention_heads": 6,
    "decoder_attention_heads": 6,
    "encoder_ffn_dim": 1536,
    "decoder_ffn_dim": 1536,
}
CPU_SIZE = {}  # tiny_model's default: d_model 64, 2+2 layers
# The random models of sections 5 and 6 on CPU (a shape of whisper_ko.shapes.SHAPES' form).
CPU_SHAPE = (64, 2, 2, 4, 256, 80, 51866)
# Korean speech in Whisper's byte-level BPE, for the implied RTFx: an assumption, printed with it.
TOKENS_PER_SECOND = 8
LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
# name, train params, whether the base is the float16-config copy
TRAIN_RUNS = [
    ("bf16_full", {"precision": "bf16"}, False),
    ("fp16_full", {"precision": "fp16"}, False),
    ("bf16_activation_checkpointing", {"precision": "bf16", "gradient_checkpointing": True}, False),
    ("bf16_lora", {"precision": "bf16", "method": "lora", "lora": LORA}, False),
    ("bf16_freeze_encoder", {"precision": "bf16", "method": "freeze_encoder"}, False),
    ("bf16_float16_config_base", {"precision": "bf16"}, True),
]


class CheckFailed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


# ---------------------------------------------------------------- 1. host


def host() -> dict:
    cuda = torch.cuda.is_available()
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "transformers": __import__("transformers").__version__,
        "accelerate": __import__("accelerate").__version__,
        "peft": __import__("peft").__version__,
        "driver": _nvidia_smi("driver_version"),
        "driver_cuda": _driver_cuda(),
        "gpus": torch.cuda.device_count() if cuda else 0,
    }
    if cuda:
        info.update(
            device=torch.cuda.get_device_name(),
            capability=".".join(map(str, torch.cuda.get_device_capability())),
            memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
            native_bf16=runtime.native_bf16(),
            sdpa_backends={
                name: getattr(torch.backends.cuda, f"{name}_sdp_enabled")()
                for name in ("flash", "mem_efficient", "cudnn", "math")
            },
        )
    problem = runtime.flash_attention_problem(torch.bfloat16, cuda)
    info["flash_attention_2"] = "loads" if problem is None else problem
    return info


def _nvidia_smi(field: str) -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"], capture_output=True, text=True
    )
    return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout else None


def _driver_cuda() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    out = subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout
    marker = "CUDA Version:"
    return out.split(marker, 1)[1].split()[0] if marker in out else None


# ---------------------------------------------------------------- data and models


def synthetic_split(root: Path, n: int, seed: int) -> list[dict]:
    """Manifest rows of `n` clips of 1-4 s (tones in noise, 8 kHz like telephone audio) with
    sentences of the sample corpus as labels: enough to exercise every code path, nothing to learn."""
    rng = np.random.default_rng(seed)
    texts = training_texts()
    rows = []
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        duration = float(rng.uniform(1.0, 4.0))
        t = np.arange(int(duration * 8000)) / 8000
        wave = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 400) * t) + 0.05 * rng.standard_normal(t.size)
        path = root / f"{i:04d}.wav"
        sf.write(path, wave.astype(np.float32), 8000, subtype="PCM_16")
        rows.append(
            {
                "id": f"{root.name}/{i:04d}",
                "audio": str(path),
                "sample_rate": 8000,
                "duration": duration,
                "category": f"D0{i % 2 + 1}",
                "text": texts[i % len(texts)],
                "raw_text": texts[i % len(texts)],
            }
        )
    return rows


def float16_copy(model_dir: Path, out: Path) -> Path:
    """The model saved with a float16 config, as large-v3 and turbo are published."""
    WhisperForConditionalGeneration.from_pretrained(model_dir).half().save_pretrained(out)
    WhisperProcessor.from_pretrained(model_dir).save_pretrained(out)
    return out


# ---------------------------------------------------------------- 2. training runs


def train_run(name: str, fields: dict, base: Path, features: Path, work: Path, cuda: bool, steps: int) -> dict:
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    out = work / name
    paths = Paths(
        features=str(features),
        model=str(out / "model"),
        checkpoints=str(out / "checkpoints"),
        curves=str(out / "dvclive"),
        reports=str(out / "reports"),
        speed=str(out / "speed"),
    )
    config = Train(
        **{
            "eval_steps": steps // 2,
            "eval_max_samples": 8,
            "eval_max_new_tokens": 16,
            "early_stopping_patience": None,
            "warmup_ratio": 0.0,
            "max_steps": steps,
            "per_device_train_batch_size": 8,
            "per_device_eval_batch_size": 8,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "save_total_limit": None,
            **fields,
        }
    )
    model = Model(base=str(base), attention="auto")
    start = time.perf_counter()
    summary = finetune(model, config, paths, log=lambda message: None)
    wall = time.perf_counter() - start
    check(summary["global_steps"] == steps, f"{summary['global_steps']} steps, not {steps}")
    check(math.isfinite(summary["train_loss"]), f"train loss {summary['train_loss']}")
    cer = (out / "dvclive/plots/metrics/eval/cer.tsv").read_text().splitlines()[1:]
    check(len(cer) == 2, f"eval CER logged {len(cer)} times, not 2")
    saved = load_file(str(out / "model" / "model.safetensors"))
    check({t.dtype for t in saved.values()} == {torch.float32}, "saved weights are not all fp32 master weights")
    check(_best_reloaded(summary, out, saved, base), f"the saved model is not checkpoint-{summary['best_step']}")
    decoding = inference.Decoding.of(Benchmark(max_new_tokens=8, fallback=Fallback(apply=False)), model)
    net, processor, _ = inference.load(str(out / "model"), "cuda" if cuda else "cpu", "auto")
    batch = inference.prepare([row["audio"] for row in _val_rows(features)][:2], net.config.num_mel_bins, net.dtype)
    check(
        all(isinstance(h, str) for h in inference.decode(net, processor, batch, decoding)),
        "the saved model does not generate",
    )
    return {
        "name": name,
        "ok": True,
        "precision": summary["precision"],
        "attention": summary["attention"],
        "train_loss": round(summary["train_loss"], 4),
        "samples_per_s": summary["speed"]["samples_per_s"],
        "peak_memory_gib": summary["speed"]["peak_memory_gib"],
        "wall_s": round(wall, 1),
    }


def _best_reloaded(summary: dict, out: Path, saved: dict, base: Path) -> bool:
    """Whether the saved weights are those of the best checkpoint (load_best_model_at_end)."""
    checkpoint = out / "checkpoints" / f"checkpoint-{summary['best_step']}"
    if summary["method"] != "lora":
        best = load_file(str(checkpoint / "model.safetensors"))
        return all(torch.equal(best[k], saved[k]) for k in best if k in saved)
    from peft import PeftModel

    merged = PeftModel.from_pretrained(WhisperForConditionalGeneration.from_pretrained(base), checkpoint)
    merged = merged.merge_and_unload().state_dict()
    return all(torch.allclose(merged[k], saved[k], atol=1e-6) for k in saved)


def _val_rows(features: Path) -> list[dict]:
    return [json.loads(line) for line in (features / "val_rows.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- 3. two GPUs


def ddp_stage(base: Path, features: Path, work: Path) -> dict:
    """The train stage with nproc_per_node 2: fresh, then again, when the completed run is published, not retrained."""
    project = work / "ddp"
    (project / "data").mkdir(parents=True)
    (project / "data" / "features").symlink_to(features)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"].update(base=str(base))
    params["train"].update(
        nproc_per_node=2,
        max_steps=4,
        eval_steps=2,
        eval_max_samples=8,
        per_device_train_batch_size=8,
        eval_max_new_tokens=16,
    )
    (project / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    outputs = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-m", "whisper_ko.cli", "train"], cwd=project, capture_output=True, text=True, timeout=600
        )
        check(proc.returncode == 0, f"the stage failed under torchrun:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        outputs.append(proc.stdout)
    check(
        "publishing it, not retraining" in outputs[1], "the rerun trained again instead of publishing the completed run"
    )
    summary = json.loads((project / "models/finetuned/training_summary.json").read_text())
    check(summary["world_size"] == 2 and summary["global_steps"] == 4, f"summary {summary}")
    speed = json.loads((project / "metrics/speed/train.json").read_text())
    return {"ok": True, "world_size": 2, "samples_per_s": speed["samples_per_s"]}


# ---------------------------------------------------------------- 4. benchmark


def benchmark_two_models(models: dict[str, str], rows: list[dict], cuda: bool) -> dict:
    # Whole calls too, on the device with the loop guards (long_form_run applies them): features, masks
    # and sampling where a dtype or device mismatch would only show on a GPU.
    settings = Benchmark(
        max_new_tokens=16,
        batch_size=None if cuda else 4,
        cpu_workers=2,
        batch_timeout_s=300,
        bootstrap_resamples=0,
        fallback=Fallback(apply=False),
        long_form=LongForm(max_new_tokens=32),
    )
    options = scheduling.Options.of(settings, Model(base=models["base"]))
    scoring = Scoring.of(settings, rows)
    results = evaluation.run(models, rows, options, scoring)
    out = {}
    for alias, result in results.items():
        check(all(h is not None for h in result.transcripts.hypotheses), f"{alias}: utterances without a hypothesis")
        speed = result.speed
        check(speed["rtfx"] > 0 and speed["rtfx_per_device"] > 0, f"{alias}: no speed measured")
        out[alias] = {
            "cer": result.metrics["overall"]["cer"],
            "rtfx": speed["rtfx"],
            "rtfx_per_device": speed["rtfx_per_device"],
            "workers": len(result.transcripts.timings),
            "dtype": result.transcripts.dtype,
            "attention": result.transcripts.attention,
        }
    calls = evaluation.long_form_run(settings, options.decoding, rows, models, options, scoring)
    for alias, methods in calls.items():
        for method, result in methods.items():
            check(result.metrics["overall"]["failed"] == 0, f"{alias} · {method}: a call failed")
            out[alias][f"calls_{method}_rtfx"] = result.speed["rtfx"]
    return {"ok": True, **out}


# ---------------------------------------------------------------- 5. generate timing


def random_model(shape, cuda: bool) -> WhisperForConditionalGeneration:
    """A randomly initialised Whisper of `shape`, created on the device (seconds even for large-v3)."""
    config = shapes.config(shape, suppress_tokens=None, begin_suppress_tokens=None)
    with torch.device("cuda" if cuda else "cpu"):
        return WhisperForConditionalGeneration(config)


def preset_steps(preset: Path, cuda: bool, steps: int = 3) -> dict:
    """Peak memory and speed of the preset's training step on a random model of its shape at its
    batch: single clips against packed windows (utterances/s of each)."""
    params = yaml.safe_load(preset.read_text())
    train = params["train"]
    shape = params["model"]["base"].removeprefix("openai/whisper-") if cuda else CPU_SHAPE
    batch = train["per_device_train_batch_size"] if cuda else 2
    model = random_model(shape, cuda).train()
    if train["gradient_checkpointing"]:
        model.gradient_checkpointing_enable({"use_reentrant": False})
        model.config.use_cache = False
    optimizer = torch.optim.AdamW(model.parameters(), lr=train["learning_rate"], fused=cuda)
    device = "cuda" if cuda else "cpu"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    features = torch.randn(batch, model.config.num_mel_bins, 3000, dtype=torch.bfloat16, device=device)
    timed = {}
    for kind, tokens, utterances in (
        ("single", shapes.TELEPHONE_SINGLE_TOKENS, 1),
        ("packed", shapes.TELEPHONE_PACKED_TOKENS, shapes.TELEPHONE_PACKED_UTTERANCES),
    ):
        labels = torch.randint(0, model.config.vocab_size, (batch, tokens), device=device)
        for step in range(steps + 1):  # the first step is warm-up: it also creates AdamW's states
            if step == 1:
                sync()
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
            with torch.autocast(device, dtype=torch.bfloat16):
                loss = model(input_features=features, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train["max_grad_norm"])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        sync()
        elapsed = time.perf_counter() - start
        check(math.isfinite(loss.item()), f"{preset.stem}: loss {loss.item()}")
        timed[kind] = {
            "label_tokens": tokens,
            "utterances_per_window": utterances,
            "peak_memory_gib": round(runtime.peak_memory_gib(cuda), 1),
            "windows_per_s": round(batch * steps / elapsed, 2),
            "utterances_per_s": round(batch * steps * utterances / elapsed, 2),
        }
    return {
        "preset": preset.stem,
        "shape": shape if cuda else "d_model 64 (CPU)",
        "batch": batch,
        "gradient_checkpointing": train["gradient_checkpointing"],
        "peak_memory_gib": max(t["peak_memory_gib"] for t in timed.values()),
        "samples_per_s": timed["single"]["windows_per_s"],
        **timed,
        "packed_speedup": round(timed["packed"]["utterances_per_s"] / timed["single"]["utterances_per_s"], 2),
    }


def generate_timing(cuda: bool, batches: list[int], steps: int = 32) -> list[dict]:
    """Encoder and per-step decoder cost of a random model (large-v3's shape on a GPU)."""
    model = random_model("large-v3" if cuda else CPU_SHAPE, cuda).to(torch.bfloat16 if cuda else torch.float32).eval()
    device, dtype = model.device, model.dtype
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    rows = []
    for batch in batches:
        feats = torch.randn(batch, model.config.num_mel_bins, 3000, device=device, dtype=dtype)
        decode = {
            "decoder_input_ids": torch.full((batch, 1), model.config.decoder_start_token_id, device=device),
            "attention_mask": torch.ones(batch, 3000, dtype=torch.long, device=device),
            "min_new_tokens": steps,
            "max_new_tokens": steps,
        }
        with torch.inference_mode():
            for _ in range(2):  # warm-up: allocator, cuDNN autotuning, kernel selection
                model.generate(feats, **decode)
            sync()
            start = time.perf_counter()
            model.model.encoder(feats)
            sync()
            encoder_s = time.perf_counter() - start
            start = time.perf_counter()
            model.generate(feats, **decode)
            sync()
            total_s = time.perf_counter() - start
        step_s = max(total_s - encoder_s, 0.0) / steps
        row = {
            "batch": batch,
            "encoder_ms": round(encoder_s * 1e3, 1),
            "ms_per_step": round(step_s * 1e3, 2),
            "utterances_per_s": round(batch / total_s, 1),
        }
        for seconds in (4, 10):  # a clip of this length decodes about TOKENS_PER_SECOND tokens a second
            row[f"rtfx_{seconds}s"] = round(batch * seconds / (encoder_s + seconds * TOKENS_PER_SECOND * step_s), 1)
        rows.append(row)
        del feats
    return rows


# ---------------------------------------------------------------- the whole check


def run_checks(work: Path, cuda: bool) -> dict:
    summary = {
        "host": host(),
        "train": [],
        "ddp": None,
        "benchmark": None,
        "presets": [],
        "generate": None,
        "failures": [],
    }

    def attempt(section: str, action, record=None):
        try:
            result = action()
        except Exception as err:
            summary["failures"].append(f"{section}: {type(err).__name__}: {err}")
            traceback.print_exc()
            result = {"name": section, "ok": False, "error": f"{type(err).__name__}: {err}"}
        (record or (lambda r: summary.__setitem__(section, r)))(result)
        click.echo(f"{section}: {'ok' if result.get('ok', True) else 'FAILED'}", err=True)
        return result

    size = GPU_SIZE if cuda else CPU_SIZE
    base = tiny_model.build(work / "base", n_mels=80, seed=0, texts=training_texts(), **size)
    features = work / "features"
    for split, n, seed in (("train", 64, 0), ("val", 16, 1)):
        rows = synthetic_split(work / "audio" / split, n, seed)
        preprocess_split(rows, features / split, Model(base=str(base)), Preprocess(shard_size=32, workers=1))
        (features / f"{split}_rows.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    half = float16_copy(base, work / "base-float16")
    steps = 8 if cuda else 4
    for name, fields, float16_base in TRAIN_RUNS:
        if fields["precision"] == "fp16" and not cuda:
            summary["train"].append({"name": name, "skipped": "fp16 needs a CUDA GPU"})
            continue
        attempt(
            f"train {name}",
            lambda name=name, fields=fields, base=half if float16_base else base: train_run(
                name, fields, base, features, work, cuda, steps
            ),
            summary["train"].append,
        )
    if cuda and torch.cuda.device_count() >= 2:
        attempt("ddp", lambda: ddp_stage(base, features, work))
    else:
        summary["ddp"] = {"skipped": "needs two GPUs"}
    finetuned = work / "bf16_full" / "model"
    attempt(
        "benchmark",
        lambda: benchmark_two_models({"base": str(base), "finetuned": str(finetuned)}, _val_rows(features), cuda),
    )
    for preset in sorted((REPO / "presets").glob("*.yaml")):
        attempt(
            f"preset {preset.stem}",
            lambda preset=preset: {"ok": True, **preset_steps(preset, cuda)},
            summary["presets"].append,
        )
    attempt(
        "generate",
        lambda: {
            "ok": True,
            "shape": "large-v3" if cuda else "d_model 64 (CPU)",
            "tokens_per_second_assumed": TOKENS_PER_SECOND,
            "rows": generate_timing(cuda, [16, 64, 128] if cuda else [2, 4]),
        },
    )
    summary["ok"] = not summary["failures"]
    return summary


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("gpu-check"),
    show_default=True,
    help="Where the summary (gpu_check.json) and the run's files go.",
)
@click.option("--allow-cpu", is_flag=True, help="Without a GPU, run the CPU-runnable parts instead of failing.")
def main(out: Path, allow_cpu: bool):
    """Verify this host's GPU paths of training and benchmarking; JSON summary last."""
    try:
        cuda = runtime.cuda_available()
    except runtime.DeviceError as err:
        raise click.ClickException(str(err)) from err
    if not cuda and not allow_cpu:
        raise click.ClickException(
            "no CUDA GPU is visible: this check is for GPU hosts (--allow-cpu runs the CPU parts)"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=out) as work:
        summary = run_checks(Path(work), cuda)
    summary["wall_s"] = round(time.perf_counter() - start, 1)
    text = json.dumps(summary, indent=2)
    (out / "gpu_check.json").write_text(text + "\n")
    click.echo(text)
    sys.exit(0 if summary["ok"] else 1)


if __name__ == "__main__":
    main()
