"""Whisper checkpoints for inference: checking, loading, and transcribing batches of audio files.

Audio is decoded and featurised with `whisper_ko.audio` and `whisper_ko.features`, the code that
made the training features, so a model is scored on exactly the inputs it was trained on.
CTranslate2 exports are decoded by faster-whisper instead (`whisper_ko.faster`), behind the same
`prepare`/`decode` interface (`open_model`).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from transformers import (
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)

from whisper_ko import audio, checks, config, dims, faster, features, long_form, runtime
from whisper_ko.errors import UserError


class ModelError(UserError):
    """A model that cannot be scored: missing, unreadable, or inconsistent with its features."""


@dataclass(frozen=True)
class Decoding:
    """How a worker decodes: the params' settings (`of` takes them from the config sections, which
    hold their defaults), the way of decoding and the loop guards."""

    language: str
    task: str
    num_beams: int
    max_new_tokens: int  # per 30-s window
    seed: int  # sampling at a fallback temperature, reseeded per batch: a rerun gives the same text
    condition_on_prev_tokens: bool | None  # sequential: None keeps each engine's own default
    vad_batch_size: int
    # short: each clip in one 30-s window, as the utterances are scored; sequential: a call in 30-s
    # windows moved along by the timestamps the model predicts; vad: faster-whisper's VAD chunks,
    # decoded in batches (CTranslate2 models)
    method: Literal["short", "sequential", "vad"] = "short"
    guards: config.Fallback | None = None  # temperature fallback and its thresholds; None: one pass

    @classmethod
    def of(cls, settings: config.Benchmark, model: config.Model) -> "Decoding":
        """The benchmark's decoding of test utterances as the params say: with the loop guards where
        benchmark.fallback.apply (whole calls: `dataclasses.replace` the method and token cap)."""
        return cls(
            language=model.language,
            task=model.task,
            num_beams=settings.num_beams,
            max_new_tokens=settings.max_new_tokens,
            seed=settings.seed,
            condition_on_prev_tokens=settings.long_form.condition_on_prev_tokens,
            vad_batch_size=settings.long_form.vad_batch_size,
            guards=settings.fallback if settings.fallback.apply else None,
        )


def guard_options(guards: config.Fallback | None, long: bool) -> dict:
    """transformers' generate() arguments for Whisper's loop guards (none without `guards`). The
    no-speech check applies to calls only: an utterance is never silence to skip."""
    if guards is None:
        return {}
    options = {
        "temperature": tuple(guards.temperatures),
        "compression_ratio_threshold": guards.token_compression_ratio_threshold,
        "logprob_threshold": guards.logprob_threshold,
    }
    return {**options, "no_speech_threshold": guards.no_speech_threshold} if long else options


def check(model: str, processor_fallback: str | None = None) -> str:
    """Cheap checks (no weights read) so a bad model fails before any worker starts; returns
    where its processor (tokenizer and feature extractor) comes from.

    A training checkpoint directory holds weights and config only; its processor is the one of the
    model it was trained from, `processor_fallback`. A CTranslate2 model carries its own.
    """
    if checks.is_ctranslate2(model):
        if missing := checks.ct2_missing(model):
            raise ModelError(
                f"{model!r} is a CTranslate2 model without {', '.join(missing)}: faster-whisper cannot load it"
            )
        return model
    if Path(model).is_dir():  # its weights, before any worker loads the models listed before it
        try:
            checks.require_model_files(model, "directory", tokenizer=False)
        except checks.ModelFilesError as err:
            raise ModelError(str(err)) from None
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


def load(
    model: str,
    device: str = "cpu",
    dtype: str = "auto",
    processor: str | None = None,
    attention: str = "sdpa",
    log=print,
) -> tuple[WhisperForConditionalGeneration, WhisperProcessor, str]:
    """The model on `device` in eval mode, its weights in the dtype `runtime.precision` gives for
    `dtype` (fp32 on CPU, bf16 or fp16 on GPU for auto), its processor (from `processor` where
    given, see `check`), and its attention implementation, chosen by the training's policy."""
    cuda = device.startswith("cuda")
    compute = runtime.DTYPES[runtime.precision(dtype, cuda, "benchmark.dtype")]
    net, attention = runtime.load_whisper(
        model, weights=compute, compute_dtype=compute, attention=attention, cuda=cuda, log=log
    )
    bad = runtime.nonfinite_parameter(net)
    if bad:
        raise ModelError(f"{model!r} has non-finite weights ({bad}): it comes from a diverged training run; retrain it")
    net = net.to(device).eval()
    # Generation is bounded by max_new_tokens; a max_length left in the checkpoint's generation
    # config makes every generate() call warn that both are set.
    net.generation_config.max_length = None
    return net, WhisperProcessor.from_pretrained(processor or model), attention


class Transformers:
    """A transformers Whisper behind the interface the benchmark's workers use (see `open_model`)."""

    def __init__(self, path: str, device: str, dtype: str, processor: str | None, attention: str):
        self.model, self.processor, self.attention = load(path, device, dtype, processor, attention)
        self.cuda = device.startswith("cuda")
        self.dtype = str(self.model.dtype).removeprefix("torch.")

    def prepare(self, sources: list, decoding: Decoding) -> "Batch":
        if decoding.method == "sequential":
            return prepare_calls(sources, self.processor, self.model.dtype, self.cuda)
        return prepare(sources, self.model.config.num_mel_bins, self.model.dtype, self.cuda)

    def decode(self, batch: "Batch", decoding: Decoding) -> list:
        torch.manual_seed(decoding.seed)
        if decoding.method == "sequential":
            return decode_calls(self.model, self.processor, batch, decoding)
        return decode(self.model, self.processor, batch, decoding)


def open_model(
    path: str, device: str, dtype: str, processor: str | None, attention: str
) -> "Transformers | faster.FasterWhisper":
    """The model at `path` ready to `prepare` and `decode` batches of audio: a CTranslate2
    directory through faster-whisper, anything else through transformers."""
    if checks.is_ctranslate2(path):
        return faster.FasterWhisper(path, device)
    return Transformers(path, device, dtype, processor, attention)


@dataclass
class Batch:
    """The audio of one batch, read and featurised, ready for `decode`."""

    size: int
    features: torch.Tensor | None  # (len(ok), n_mels, 3000) in the model's dtype; None if nothing was read
    ok: list[int]  # positions in the batch whose audio was read
    errors: dict[int, str]  # position → why its audio could not be read
    mask: torch.Tensor | None = None  # calls: (len(ok), frames), 1 on the frames of each call's audio


def prepare(paths: list[str], n_mels: int, dtype: torch.dtype = torch.float32, pin: bool = False) -> Batch:
    """Read and featurise `paths` (CPU work that can overlap the previous batch's decoding).
    `pin`: page-locked memory, so the copy to the GPU runs asynchronously."""
    feats, ok, errors = featurize(paths, n_mels)
    tensor = None if feats is None else torch.from_numpy(feats).to(dtype)
    return Batch(len(paths), tensor.pin_memory() if pin and tensor is not None else tensor, ok, errors)


def decode(
    model: WhisperForConditionalGeneration, processor: WhisperProcessor, batch: Batch, decoding: Decoding
) -> list[str | None]:
    """Hypotheses for a prepared batch, None where its audio could not be read."""
    hypotheses: list[str | None] = [None] * batch.size
    if batch.features is not None:
        for i, text in zip(batch.ok, generate(model, processor, batch.features, decoding), strict=True):
            hypotheses[i] = text
    return hypotheses


def featurize(paths: list, n_mels: int) -> tuple[np.ndarray | None, list[int], dict[int, str]]:
    """Whisper inputs (B, n_mels, 3000) of the files that could be read, their positions in
    `paths`, and an error message for each position that could not."""
    waves, read, errors = long_form.read_all(paths)
    feats, ok = [], []
    for i, wave in zip(read, waves, strict=True):
        try:
            feats.append(features.pad(features.log_mel(wave, n_mels)))
            ok.append(i)
        except audio.AudioError as err:  # features that are not finite
            errors[i] = str(err)
    return (np.stack(feats) if feats else None), ok, errors


def prepare_calls(sources: list, processor: WhisperProcessor, dtype: torch.dtype, pin: bool = False) -> Batch:
    """Read whole calls and featurise them as transformers' long-form pipeline takes them: by the
    model's own feature extractor over each whole call (one normalisation per call, not per 30 s,
    as openai's transcribe does; `features.log_mel` stops at 30 s by design), padded to the longest
    call and to 30 s at least, with the mask of each call's real frames."""
    waves, ok, errors = long_form.read_all(sources)
    if not waves:
        return Batch(len(sources), None, ok, errors)
    longest = max(len(wave) for wave in waves)
    out = processor.feature_extractor(
        waves,
        sampling_rate=dims.SAMPLE_RATE,
        return_tensors="pt",
        truncation=False,
        padding="longest" if longest > dims.N_SAMPLES else "max_length",
        return_attention_mask=True,
    )
    feats = out.input_features.to(dtype)
    return Batch(len(sources), feats.pin_memory() if pin else feats, ok, errors, out.attention_mask)


def generate(
    model: WhisperForConditionalGeneration,
    processor: WhisperProcessor,
    feats: np.ndarray | torch.Tensor,
    decoding: Decoding,
) -> list[str]:
    """Decoded text of a batch of Whisper inputs, language and task forced."""
    inputs = torch.as_tensor(feats).to(model.device, model.dtype, non_blocking=True)
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
            **guard_options(decoding.guards, long=False),
        )
    return [text.strip() for text in processor.batch_decode(ids, skip_special_tokens=True)]


def decode_calls(
    model: WhisperForConditionalGeneration, processor: WhisperProcessor, batch: Batch, decoding: Decoding
) -> list[dict | None]:
    """Transformers' long-form generate over whole calls: sequential 30-s windows moved along by the
    predicted timestamps, with the loop guards. Per call: its text (the segments' joined), its
    segments, the windows that hit `max_new_tokens` and `fallback` None (transformers does not say
    which segments it decoded again)."""
    outputs: list[dict | None] = [None] * batch.size
    if batch.features is None:
        return outputs
    condition = decoding.condition_on_prev_tokens
    with torch.inference_mode():
        found = model.generate(
            batch.features.to(model.device, non_blocking=True),
            attention_mask=batch.mask.to(model.device),
            language=decoding.language,
            task=decoding.task,
            num_beams=decoding.num_beams,
            max_new_tokens=decoding.max_new_tokens,
            max_length=None,
            return_timestamps=True,
            return_segments=True,
            condition_on_prev_tokens=bool(condition),  # transformers' own default is off
            **guard_options(decoding.guards, long=True),
        )
    eot = processor.tokenizer.eos_token_id
    for i, segments in zip(batch.ok, found["segments"], strict=True):
        # The segments of one window share its generate() output: a window that ends without
        # end-of-text stopped at max_new_tokens.
        windows = {id(s["result"]): s["result"]["sequences"] for s in segments if isinstance(s.get("result"), dict)}
        parts = [
            (float(s["start"]), float(s["end"]), processor.decode(s["tokens"], skip_special_tokens=True).strip())
            for s in segments
        ]
        outputs[i] = long_form.output(parts, sum(int(seq[-1]) != eot for seq in windows.values()), None)
    return outputs
