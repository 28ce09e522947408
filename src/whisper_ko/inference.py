"""Batched transcription of manifest rows, featurised exactly as in training."""

import re
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from whisper_ko import audio, features

_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def load(model: str, device: str = "cpu") -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """A local directory or a hub id (`openai/whisper-small`); a missing directory is a clear error."""
    hub_id = _HUB_ID.fullmatch(model) and not Path(model.split("/")[0]).exists()
    if not Path(model).is_dir() and not hub_id:
        raise FileNotFoundError(f"model {model!r}: no such directory (nor a hub id like openai/whisper-small)")
    dtype = torch.float32 if device == "cpu" else torch.float16
    net = WhisperForConditionalGeneration.from_pretrained(model, dtype=dtype).to(device).eval()
    return net, WhisperProcessor.from_pretrained(model)


def transcribe(
    model: WhisperForConditionalGeneration,
    processor: WhisperProcessor,
    rows: list[dict],
    *,
    language: str = "ko",
    task: str = "transcribe",
    batch_size: int = 16,
    num_beams: int = 1,
    max_new_tokens: int = 128,
    desc: str = "transcribe",
) -> list[str | None]:
    """Hypotheses in the order of `rows`; None where the audio could not be read."""
    n_mels = model.config.num_mel_bins
    # Longest first: similar lengths share a batch, so fewer decoder steps are wasted on padding.
    order = sorted(range(len(rows)), key=lambda i: -rows[i]["duration"])
    hypotheses: list[str | None] = [None] * len(rows)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch"):
        batch = order[start : start + batch_size]
        feats, ok = [], []
        for i in batch:
            try:
                feats.append(features.pad(features.log_mel(audio.load(rows[i]["audio"]), n_mels)))
                ok.append(i)
            except audio.AudioError:
                continue
        if not ok:
            continue
        inputs = torch.from_numpy(np.stack(feats)).to(model.device, model.dtype)
        with torch.inference_mode():
            out = model.generate(
                inputs, language=language, task=task, num_beams=num_beams, max_new_tokens=max_new_tokens
            )
        for i, text in zip(ok, processor.batch_decode(out, skip_special_tokens=True)):
            hypotheses[i] = text.strip()
    return hypotheses
