"""Whisper checkpoints for inference: checking, loading, and transcribing batches of audio files.

Audio is decoded and featurised with `whisper_ko.audio` and `whisper_ko.features`, the code that
made the training features, so a model is scored on exactly the inputs it was trained on.
"""

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import (
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)

from whisper_ko import audio, features

DTYPES = ("auto", "bfloat16", "float16", "float32")


class ModelError(ValueError):
    """A model that cannot be scored: missing, unreadable, or inconsistent with its features."""


@dataclass(frozen=True)
class Decoding:
    language: str = "ko"
    task: str = "transcribe"
    num_beams: int = 1  # greedy: beams cost proportionally more time for ~0.1-0.3 points of CER
    max_new_tokens: int = 128


def check(model: str, processor_fallback: str | None = None) -> str:
    """Cheap checks (no weights read) so a bad model fails before any worker starts; returns
    where its processor (tokenizer and feature extractor) comes from.

    A training checkpoint directory holds weights and config only; its processor is the one of the
    model it was trained from, `processor_fallback`.
    """
    processor = model
    try:
        config = WhisperConfig.from_pretrained(model)
        if processor_fallback and not _has_processor(model):
            processor = processor_fallback
        extractor = WhisperFeatureExtractor.from_pretrained(processor)
        WhisperTokenizer.from_pretrained(processor)
    except (OSError, ValueError) as err:  # ValueError: not even the form of a hub id
        problem = "cannot be read" if Path(model).is_dir() else "is no directory here, nor a hub id available here"
        raise ModelError(f"{model!r} {problem}: {err}") from err
    # A checkpoint saved with another size's preprocessor (large-v3 has 128 mel bins, the others 80)
    # would make every Whisper-format consumer feed it the wrong features.
    if config.num_mel_bins != extractor.feature_size:
        raise ModelError(
            f"{model!r} expects {config.num_mel_bins} mel bins but its feature extractor makes "
            f"{extractor.feature_size} ({processor}): config and preprocessor come from different checkpoints"
        )
    return processor


def _has_processor(model: str) -> bool:
    try:
        WhisperFeatureExtractor.from_pretrained(model)
    except OSError:
        return False
    return True


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """`auto`: fp32 on CPU (half precision is slower there), bf16 on GPUs that have it, else fp16."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if dtype != "auto":
        return getattr(torch, dtype)
    if not device.startswith("cuda"):
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load(
    model: str, device: str = "cpu", dtype: str = "auto", processor: str | None = None
) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """The model on `device` in eval mode with the fastest attention that loads, and its processor
    (from `processor` where given, see `check`)."""
    net = _from_pretrained(model, resolve_dtype(dtype, device), device).to(device).eval()
    # Generation is bounded by max_new_tokens; a max_length left in the checkpoint's generation
    # config makes every generate() call warn that both are set.
    net.generation_config.max_length = None
    return net, WhisperProcessor.from_pretrained(processor or model)


def _from_pretrained(model: str, dtype: torch.dtype, device: str) -> WhisperForConditionalGeneration:
    error = None
    for attention in _attention_candidates(dtype, device):
        try:
            return WhisperForConditionalGeneration.from_pretrained(model, dtype=dtype, attn_implementation=attention)
        except (ImportError, ValueError) as err:  # implementation not installed or not supported here
            error = err
    raise error


def _attention_candidates(dtype: torch.dtype, device: str) -> list[str]:
    # flash-attention-2 runs only on CUDA in half precision, and only when the package is installed.
    flash = device.startswith("cuda") and dtype != torch.float32 and importlib.util.find_spec("flash_attn")
    return ["flash_attention_2", "sdpa", "eager"] if flash else ["sdpa", "eager"]


def featurize(paths: list[str], n_mels: int) -> tuple[np.ndarray | None, list[int], dict[int, str]]:
    """Whisper inputs (B, n_mels, 3000) of the files that could be read, their positions in
    `paths`, and an error message for each position that could not."""
    feats, ok, errors = [], [], {}
    for i, path in enumerate(paths):
        try:
            feats.append(features.pad(features.log_mel(audio.load(path), n_mels)))
            ok.append(i)
        except audio.AudioError as err:
            errors[i] = str(err)
    return (np.stack(feats) if feats else None), ok, errors


def generate(
    model: WhisperForConditionalGeneration, processor: WhisperProcessor, feats: np.ndarray, decoding: Decoding
) -> list[str]:
    """Decoded text of a batch of Whisper inputs, language and task forced."""
    inputs = torch.from_numpy(feats).to(model.device, model.dtype)
    # Every frame is real model input (the padding is Whisper's own), so the mask is all ones;
    # without one, generate warns about batched inputs whose padding it cannot infer.
    mask = torch.ones(inputs.shape[0], inputs.shape[-1], dtype=torch.long, device=model.device)
    with torch.inference_mode():
        ids = model.generate(
            inputs,
            attention_mask=mask,
            language=decoding.language,
            task=decoding.task,
            num_beams=decoding.num_beams,
            max_new_tokens=decoding.max_new_tokens,
            max_length=None,
        )
    return [text.strip() for text in processor.batch_decode(ids, skip_special_tokens=True)]


def transcribe(
    model: WhisperForConditionalGeneration, processor: WhisperProcessor, paths: list[str], decoding: Decoding
) -> tuple[list[str | None], dict[int, str]]:
    """Hypotheses for `paths` (None where the audio could not be read) and the read errors by position."""
    feats, ok, errors = featurize(paths, model.config.num_mel_bins)
    hypotheses: list[str | None] = [None] * len(paths)
    if feats is not None:
        for i, text in zip(ok, generate(model, processor, feats, decoding)):
            hypotheses[i] = text
    return hypotheses, errors
