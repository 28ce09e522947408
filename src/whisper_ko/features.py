"""Whisper log-mel features without the 30 s of padding, and the padding that restores them exactly.

Whisper pads every clip with zeros to 30 s before its STFT. After the clamp to (max − 8) and the
(x + 4) / 4 scaling, every frame that sees only padding equals `max(max_norm − 2, −1.5)`, where
`max_norm` is the largest normalised value of the clip. So we store only the frames that see real
audio and `pad` rebuilds the 3000-frame input `WhisperFeatureExtractor` would have produced.
"""

from functools import lru_cache

import numpy as np
import torch
from transformers.audio_utils import mel_filter_bank

SAMPLE_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
N_FRAMES = 3000  # 30 s at 100 frames/s: the encoder's fixed input length
_HALF_WINDOW = N_FFT // 2


def num_frames(num_samples: int) -> int:
    """Frames whose (centred) window overlaps real audio: frame t covers [160 t − 200, 160 t + 200)."""
    return min((num_samples + _HALF_WINDOW - 1) // HOP_LENGTH + 1, N_FRAMES)


@lru_cache(maxsize=4)
def _mel_filters(n_mels: int) -> torch.Tensor:
    # The same call WhisperFeatureExtractor makes, so the filters are identical.
    filters = mel_filter_bank(
        num_frequency_bins=1 + N_FFT // 2,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(filters.T).to(torch.float32)


def log_mel(audio: np.ndarray, n_mels: int) -> np.ndarray:
    """Normalised log-mel (n_mels, T) of 16 kHz float audio, T = `num_frames(len(audio))`.

    Equal, frame for frame, to `WhisperFeatureExtractor` on the same audio padded to 30 s.
    Audio longer than 30 s is cut at 30 s, as the extractor does.
    """
    audio = np.asarray(audio, dtype=np.float32)[: N_FRAMES * HOP_LENGTH]
    frames = num_frames(len(audio))
    # Zeros past the end, as Whisper's own padding: the last frames must see zeros, not a
    # reflection of the signal. torch.stft reflects at the buffer's end, which only frames past
    # `frames` see, except for a full 30 s buffer, where the extractor reflects there too.
    padded = np.zeros(min(frames * HOP_LENGTH + N_FFT, N_FRAMES * HOP_LENGTH), dtype=np.float32)
    padded[: len(audio)] = audio
    stft = torch.stft(torch.from_numpy(padded), N_FFT, HOP_LENGTH, window=_window(), return_complex=True)
    stft = stft[:, :frames]
    # |z|² as re² + im²: the same value as abs() ** 2 (to 1 ulp) without the square root.
    power = stft.real.square() + stft.imag.square()
    log_spec = (_mel_filters(n_mels) @ power).clamp_(min=1e-10).log10_()
    # Frames that see only padding are 1e-10 → −10, so the clip's max equals the padded input's.
    log_spec = torch.maximum(log_spec, torch.clamp(log_spec.max(), min=-10.0) - 8.0)
    return log_spec.add_(4.0).div_(4.0).numpy()


@lru_cache(maxsize=1)
def _window() -> torch.Tensor:
    return torch.hann_window(N_FFT)


def pad_value(feats: np.ndarray) -> float:
    """The value of every padding frame of Whisper's input for a clip with these features."""
    return max(float(feats.max()) - 2.0, -1.5)


def pad(feats: np.ndarray, frames: int = N_FRAMES, out: np.ndarray | None = None) -> np.ndarray:
    """(n_mels, T) stored features → (n_mels, frames) float32, exactly the extractor's output.

    `out`, when given, is filled in place (a row of a batch buffer: no extra copy per batch).
    """
    if out is None:
        out = np.empty((feats.shape[0], frames), dtype=np.float32)
    width = min(feats.shape[1], frames)
    out[:, :width] = feats[:, :width]
    out[:, width:] = pad_value(feats)
    return out
