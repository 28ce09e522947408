"""The device, dtype, attention and TF32 policy shared by training and inference (runtime.py)."""

import subprocess
import sys

import pytest
import torch

from whisper_ko import runtime


@pytest.fixture
def emulated_bf16_gpu(monkeypatch):
    """A V100/T4 as torch sees it: CUDA, and bf16 only through emulation."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "Tesla V100-SXM2-32GB")


def test_auto_precision_means_native_bf16_else_fp16_and_fp32_on_cpu(emulated_bf16_gpu, monkeypatch):
    assert runtime.precision("auto", cuda=True, param="train.precision") == "fp16"  # emulated bf16 is slow
    with pytest.raises(runtime.DeviceError, match=r"V100.*only emulates bf16"):
        runtime.precision("bf16", cuda=True, param="train.precision")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # an H100
    assert runtime.precision("auto", cuda=True, param="train.precision") == "bf16"
    assert runtime.precision("auto", cuda=False, param="train.precision") == "fp32"


def test_bf16_runs_on_cpu_and_fp16_needs_cuda():
    assert runtime.precision("bf16", cuda=False, param="train.precision") == "bf16"
    with pytest.raises(runtime.DeviceError, match=r"train.precision fp16 needs a CUDA GPU"):
        runtime.precision("fp16", cuda=False, param="train.precision")
    with pytest.raises(ValueError, match=r"benchmark.dtype 'bfloat16': choose one of auto, bf16, fp16, fp32"):
        runtime.precision("bfloat16", cuda=False, param="benchmark.dtype")


def test_a_gpu_host_whose_torch_cannot_use_cuda_fails_loudly(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(runtime.DeviceError, match=r"nvidia-smi is present but torch .* cannot use the GPU"):
        runtime.cuda_available()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the CPU on purpose
    assert runtime.cuda_available() is False
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)  # no driver: a CPU machine
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert runtime.cuda_available() is False


@pytest.fixture
def fake_flash_attn(tmp_path, monkeypatch):
    """Install a `flash_attn` package whose import runs `body`, as a real wheel would."""

    def install(body: str) -> None:
        package = tmp_path / "flash_attn"
        package.mkdir()
        (package / "__init__.py").write_text(body)
        monkeypatch.syspath_prepend(str(tmp_path))
        monkeypatch.delitem(__import__("sys").modules, "flash_attn", raising=False)

    return install


def test_flash_attention_only_in_half_precision_on_cuda(fake_flash_attn):
    fake_flash_attn("__version__ = '2.8.3'\n")
    assert runtime.attention_candidates("auto", torch.bfloat16, cuda=True) == (["flash_attention_2", "sdpa"], "")
    for dtype, cuda, why in ((torch.float32, True, "only in bf16/fp16"), (torch.bfloat16, False, "needs a CUDA GPU")):
        names, note = runtime.attention_candidates("auto", dtype, cuda)
        assert names == ["sdpa"] and why in note
        with pytest.raises(runtime.DeviceError, match=why):
            runtime.attention_candidates("flash_attention_2", dtype, cuda)
    # the default never tries flash-attention-2, whatever is installed
    assert runtime.attention_candidates("sdpa", torch.bfloat16, cuda=True) == (["sdpa"], "")


def test_a_flash_attn_wheel_built_for_another_torch_falls_back_to_sdpa(fake_flash_attn):
    fake_flash_attn("raise ImportError('flash_attn_2_cuda.so: undefined symbol: _ZN3c104cuda9SetDeviceEi')\n")
    names, note = runtime.attention_candidates("auto", torch.bfloat16, cuda=True)
    assert names == ["sdpa"] and "undefined symbol" in note
    with pytest.raises(runtime.DeviceError, match=r"flash_attention_2 cannot run here: .*undefined symbol"):
        runtime.attention_candidates("flash_attention_2", torch.bfloat16, cuda=True)
    with pytest.raises(ValueError, match=r"model.attention 'flash': choose one of"):
        runtime.attention_candidates("flash", torch.bfloat16, cuda=True)


def test_a_flash_attn_that_imports_but_transformers_rejects_loads_sdpa(fake_flash_attn, tiny_model):
    fake_flash_attn("__version__ = '2.8.3'\n")  # importable, but no installed distribution: transformers refuses it
    messages = []
    model, attention = runtime.load_whisper(
        str(tiny_model),
        weights=torch.float32,
        compute_dtype=torch.bfloat16,
        attention="auto",
        cuda=True,
        log=messages.append,
    )
    assert attention == "sdpa" and model.config._attn_implementation == "sdpa"  # what we report is what loaded
    assert any(m.startswith("attention flash_attention_2 did not load") for m in messages)


def test_weights_load_in_the_requested_dtype_whatever_the_config_declares(tiny_model, tmp_path):
    from transformers import WhisperForConditionalGeneration

    half = tmp_path / "half"
    WhisperForConditionalGeneration.from_pretrained(tiny_model).half().save_pretrained(half)
    assert WhisperForConditionalGeneration.from_pretrained(half).dtype == torch.float16  # transformers 5's default
    model, _ = runtime.load_whisper(
        str(half), weights=torch.float32, compute_dtype=torch.bfloat16, attention="sdpa", cuda=False
    )
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_matmul_precision_is_set_once_and_readable_through_both_apis():
    saved = torch.get_float32_matmul_precision()
    try:
        runtime.set_matmul_precision()
        # torch.compile and libraries read the legacy API; the new per-backend flags must agree
        assert torch.get_float32_matmul_precision() == "high"
        assert torch.backends.cuda.matmul.allow_tf32 is True
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
        assert torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.set_float32_matmul_precision(saved)


@pytest.mark.models
def test_whispers_own_generate_call_warns_no_one_but_other_misuse_still_does(tiny_model):
    """transformers' Whisper generate() passes a generation_config and suppress tokens together to
    its parent and warns the caller about it on every call; a fresh process, since it warns once."""
    code = f"""
import torch
from whisper_ko import config, inference
model, processor, _ = inference.load({str(tiny_model)!r})
features = torch.zeros(1, 80, 3000)
settings = config.Benchmark(max_new_tokens=2, fallback=config.Fallback(apply=False))
inference.generate(model, processor, features, inference.Decoding.of(settings, config.Model(base={str(tiny_model)!r})))
# a caller's own misuse: a generation_config and a generation argument together
model.generate(features, generation_config=model.generation_config, max_new_tokens=2, top_k=3)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "Passing `generation_config` together" in line]
    assert len(warnings) == 1 and "top_k" in warnings[0], proc.stderr


@pytest.mark.models
def test_cpu_training_computes_the_same_gradients_every_time(tiny_model):
    """The positional embedding's gradient is an index_put_ with accumulation, summed from two
    threads in any order: without deterministic algorithms four backward passes out of four
    differed from the first in the last bits here (batch 16 x 64 tokens), which changed the
    saved model, and dvc.lock, on every rerun of the demo."""
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(tiny_model).train()
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(16, 80, 3000, generator=generator)
    labels = torch.randint(0, 4000, (16, 64), generator=generator)
    grads = []
    try:
        runtime.reproducible(cuda=False)
        for _ in range(4):
            model(input_features=features, labels=labels).loss.backward()
            grads.append(model.model.decoder.embed_positions.weight.grad.clone())
            model.zero_grad()
    finally:
        torch.use_deterministic_algorithms(False)
    assert all(torch.equal(grads[0], grad) for grad in grads[1:])
