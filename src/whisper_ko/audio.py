"""Audio loading: soundfile + soxr everywhere, so training and scoring see identical samples.

One resampler for every stage matters: different resamplers move the mel bins above 4 kHz.
"""

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from whisper_ko.dims import PCM_SAMPLE_RATE, SAMPLE_RATE


class AudioError(RuntimeError):
    """Audio that cannot be used; stages record it as a skip with `reason`."""

    def __init__(self, message: str, reason: str = "audio_unreadable"):
        super().__init__(message)
        self.reason = reason


def load(path: str | Path, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Decode `path` to float32 mono at `sr` Hz (wav, flac, ... and headerless .pcm)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".pcm":
            audio, native_sr = _read_pcm(path), PCM_SAMPLE_RATE
        else:
            audio, native_sr = _read(path)
            if audio.ndim == 2:
                audio = audio.mean(axis=1, dtype=np.float32)
    except AudioError:
        raise
    except (OSError, RuntimeError, ValueError) as err:  # soundfile raises LibsndfileError(RuntimeError)
        raise AudioError(f"cannot read audio {path}: {err}") from err
    if native_sr != sr:
        audio = soxr.resample(audio, native_sr, sr, quality="HQ")
    return np.ascontiguousarray(audio, dtype=np.float32)


def _read(path: Path) -> tuple[np.ndarray, int]:
    with sf.SoundFile(path) as f:
        if f.subtype == "PCM_16":
            # libsndfile's own int16 → float loop costs a third of the read; x / 32768 is the value
            # it gives (exactly: the scale is a power of two). Most corpora are 16-bit WAV.
            return f.read(dtype="int16").astype(np.float32) * np.float32(1 / 32768), f.samplerate
        audio = f.read(dtype="float32")
    # Float WAV/FLAC can hold NaN or inf (integer PCM cannot): its features would be NaN, and so
    # would every weight trained on them.
    if not np.isfinite(audio).all():
        raise AudioError(f"audio {path} has NaN or infinite samples", reason="audio_not_finite")
    return audio, f.samplerate


def _read_pcm(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if len(raw) % 2:
        raise ValueError("odd number of bytes for 16-bit PCM")
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def change_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Kaldi's speed perturbation (sox `speed`): played `factor` times as fast, pitch moving with
    it; the samples are read as if recorded at factor × SAMPLE_RATE and resampled back."""
    return np.ascontiguousarray(soxr.resample(audio, SAMPLE_RATE * factor, SAMPLE_RATE, quality="HQ"), np.float32)


def mix_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float, offset: float) -> np.ndarray:
    """`audio` with `noise` (looped if shorter, starting `offset` of the way in) added at `snr_db`
    dB below its power. Silence, or a silent noise, is returned as it is: no ratio defines a level."""
    if not len(noise):
        return audio
    window = np.resize(np.roll(noise, -int(offset * len(noise))), len(audio))  # np.resize repeats to fill
    speech, hiss = (float(np.mean(np.square(x, dtype=np.float64))) for x in (audio, window))
    if not speech or not hiss:
        return audio
    scale = np.sqrt(speech / (hiss * 10 ** (snr_db / 10)))
    return (audio + scale * window).astype(np.float32)
