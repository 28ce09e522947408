"""Where and how a Whisper model runs, one policy for training and inference: the device, the
compute dtype, the attention implementation, TF32, and peak memory.

Training keeps fp32 weights (the master copy AdamW updates) and computes in bf16/fp16 only
through autocast; inference loads the weights in the compute dtype. Both resolve the dtype and the
attention implementation here, so a model is scored the way it was trained.
"""

import importlib
import logging
import os
import re
import resource
import shutil
from typing import get_args

import torch
from transformers import WhisperForConditionalGeneration

from whisper_ko.config import Attention, Precision
from whisper_ko.errors import UserError

PRECISIONS = get_args(Precision)
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# sdpa: PyTorch's fused attention, everywhere. auto: flash-attention-2 where it can run, else sdpa.
ATTENTIONS = get_args(Attention)


class DeviceError(UserError):
    """A host whose GPU torch cannot use, or a setting this device cannot run."""


def cuda_available() -> bool:
    """Whether torch can use a CUDA GPU here.

    A host with NVIDIA's driver (nvidia-smi on PATH) whose torch cannot use it (a CPU build, a
    driver older than the build's CUDA) fails instead of training on CPU for days.
    `CUDA_VISIBLE_DEVICES=` (empty) asks for the CPU on purpose.
    """
    if torch.cuda.is_available():
        return True
    if shutil.which("nvidia-smi") and os.environ.get("CUDA_VISIBLE_DEVICES") != "":
        raise DeviceError(
            f"nvidia-smi is present but torch {torch.__version__} (CUDA {torch.version.cuda}) cannot use the GPU: "
            "install torch's CUDA build (`make setup` on this host), check the driver with nvidia-smi, "
            "or set CUDA_VISIBLE_DEVICES= to run on the CPU on purpose"
        )
    return False


def native_bf16() -> bool:
    """bf16 in hardware (Ampere and later); V100 and T4 only emulate it, slower than fp32."""
    return torch.cuda.is_bf16_supported(including_emulation=False)


def precision(choice: str, cuda: bool, param: str) -> str:
    """bf16, fp16 or fp32 for `choice` (one of PRECISIONS; `param` names it in errors).

    auto: bf16 on GPUs that have it natively, fp16 on older GPUs, fp32 on CPU. bf16 runs on CPU
    too (torch's CPU autocast: slow, but the same code path as on a GPU); fp16 needs CUDA.
    """
    if choice not in PRECISIONS:
        raise ValueError(f"{param} {choice!r}: choose one of {', '.join(PRECISIONS)}")
    if choice == "auto":
        return ("bf16" if native_bf16() else "fp16") if cuda else "fp32"
    if choice == "fp16" and not cuda:
        raise DeviceError(f"{param} fp16 needs a CUDA GPU; on CPU use bf16 (autocast) or fp32")
    if choice == "bf16" and cuda and not native_bf16():
        raise DeviceError(f"{param} bf16: {torch.cuda.get_device_name()} only emulates bf16; use fp16 or auto")
    return choice


def flash_attention_problem(compute_dtype: torch.dtype, cuda: bool) -> str | None:
    """Why flash-attention-2 cannot run here, or None when it can."""
    if not cuda:
        return "it needs a CUDA GPU"
    if compute_dtype == torch.float32:
        return "it runs only in bf16/fp16"
    try:
        # A wheel built for another torch imports with an undefined symbol (ImportError or OSError).
        importlib.import_module("flash_attn")
    except Exception as err:
        return f"flash_attn does not import ({type(err).__name__}: {err})"
    return None


def attention_candidates(choice: str, compute_dtype: torch.dtype, cuda: bool) -> tuple[list[str], str]:
    """Implementations to try in order, and why flash-attention-2 is not among them (or "")."""
    if choice not in ATTENTIONS:
        raise ValueError(f"model.attention {choice!r}: choose one of {', '.join(ATTENTIONS)}")
    if choice not in ("auto", "flash_attention_2"):
        return [choice], ""
    problem = flash_attention_problem(compute_dtype, cuda)
    if choice == "flash_attention_2" and problem:
        raise DeviceError(f"model.attention flash_attention_2 cannot run here: {problem}; use sdpa")
    return (["sdpa"], f"flash-attention-2 not used: {problem}") if problem else (["flash_attention_2", "sdpa"], "")


class _WhisperOwnGenerateCall(logging.Filter):
    """Drops one warning that transformers addresses to the wrong party. Its own Whisper generate()
    calls GenerationMixin.generate with a generation_config and, beside it, `suppress_tokens` and
    `begin_suppress_tokens` (models/whisper/generation_whisper.py, a workaround its comment calls
    hacky), which then warns that passing both is deprecated: on every call, whoever the caller,
    with nothing a caller can change. The same warning about any other argument still shows."""

    PATTERN = re.compile(r"Passing `generation_config` together with generation-related arguments=\(\{(.*?)\}\)")
    OWN = frozenset({"suppress_tokens", "begin_suppress_tokens"})

    def filter(self, record: logging.LogRecord) -> bool:
        found = self.PATTERN.search(record.getMessage())
        return not found or {name.strip(" '") for name in found[1].split(",")} != self.OWN


_GENERATION_LOGGER = logging.getLogger("transformers.generation.utils")


def load_whisper(
    path: str, *, weights: torch.dtype, compute_dtype: torch.dtype, attention: str, cuda: bool, log=print
) -> tuple[WhisperForConditionalGeneration, str]:
    """The model with weights in `weights` whatever dtype its config declares (transformers 5 would
    otherwise load large-v3 and turbo in float16), and the attention implementation it loaded with,
    the first of `attention_candidates` that loads."""
    if not any(isinstance(f, _WhisperOwnGenerateCall) for f in _GENERATION_LOGGER.filters):
        _GENERATION_LOGGER.addFilter(_WhisperOwnGenerateCall())
    candidates, note = attention_candidates(attention, compute_dtype, cuda)
    if note and attention == "auto":
        log(note)
    for i, name in enumerate(candidates):
        try:
            return WhisperForConditionalGeneration.from_pretrained(path, dtype=weights, attn_implementation=name), name
        except (ImportError, ValueError) as err:  # the implementation is not installed or not supported here
            if i + 1 == len(candidates):
                raise
            log(f"attention {name} did not load ({err}); using {candidates[i + 1]}")
    raise AssertionError("unreachable: candidates is never empty")


def reproducible(cuda: bool) -> None:
    """Training on CPU gives the same weights run after run, so a rerun on the same inputs leaves
    the model, and dvc.lock, as they were. The backward of Whisper's decoder positional embedding
    (an indexed read, so index_put_ with accumulation) adds its rows from several threads in
    whatever order they finish unless deterministic algorithms are asked for. GPUs keep their
    faster nondeterministic kernels: bit-identical GPU runs are not promised."""
    if not cuda:
        torch.use_deterministic_algorithms(True)


def nonfinite_parameter(model: torch.nn.Module) -> str | None:
    """The name of the first parameter holding NaN or inf, or None: a model trained into NaN
    decodes "!!!!" for every clip and must be neither saved nor scored."""
    return next((name for name, p in model.named_parameters() if not torch.isfinite(p).all()), None)


def set_matmul_precision() -> None:
    """TF32 for fp32 matmuls and convolutions on Ampere and later, set once the same way in training
    and inference. Through the legacy call on purpose: it also sets the new per-backend flags, and
    both APIs stay readable, while setting only the new ones makes every later read through the
    legacy API raise (torch.compile reads it; TrainingArguments(tf32=True) sets the new ones)."""
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True


def peak_memory_gib(cuda: bool) -> float:
    """Peak memory of this process so far: allocated on the GPU, else resident on the CPU."""
    if cuda:
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux
