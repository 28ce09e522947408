"""Speech for the sample corpus: espeak-ng, resampled to 8 kHz, shaped per domain."""

import io
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from .sentences import Sentence

SAMPLE_RATE = 8000
MAX_PEAK = 0.9


class EspeakNotFound(RuntimeError):
    pass


@dataclass(frozen=True)
class Voice:
    variant: str  # an espeak-ng voice variant: "f1".."f5" sound female, "m1".."m7" male
    speed: int  # words per minute
    pitch: int  # 0-99


def require_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        raise EspeakNotFound(
            "The sample corpus is synthesised with espeak-ng, which is not on PATH. Install it "
            "(Debian/Ubuntu: `apt-get install espeak-ng`, macOS: `brew install espeak-ng`), "
            "or set `discover.root` to a real corpus instead of the sample."
        )


def synthesize(text: str, voice: Voice) -> np.ndarray:
    """Speak `text` with espeak-ng and return float32 audio at SAMPLE_RATE."""
    command = ["espeak-ng", "-v", f"ko+{voice.variant}", "-s", str(voice.speed)]
    command += ["-p", str(voice.pitch), "--stdout", text]
    result = subprocess.run(command, capture_output=True)
    if result.returncode != 0 or not result.stdout:
        raise RuntimeError(
            f"espeak-ng failed on {text!r}: {result.stderr.decode(errors='replace')}"
        )
    audio, rate = sf.read(io.BytesIO(result.stdout), dtype="float32")
    return soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ").astype(np.float32)


def band_pass(audio: np.ndarray, low: float, high: float) -> np.ndarray:
    """Zero everything outside [low, high] Hz with short cosine edges (no ringing, no scipy)."""
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
    edge = 50.0
    rise = np.clip((freqs - low + edge) / edge, 0, 1)
    fall = np.clip((high + edge - freqs) / edge, 0, 1)
    mask = np.sin(rise * np.pi / 2) ** 2 * np.sin(fall * np.pi / 2) ** 2
    return np.fft.irfft(spectrum * mask, n=len(audio)).astype(np.float32)


def mu_law_round_trip(audio: np.ndarray, mu: float = 255.0) -> np.ndarray:
    """8-bit G.711-style companding, the quantisation noise of a telephone line."""
    peak = max(float(np.abs(audio).max()), 1e-9)
    x = audio / peak
    encoded = np.round(np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) * 127) / 127
    decoded = np.sign(encoded) * np.expm1(np.abs(encoded) * np.log1p(mu)) / mu
    return (decoded * peak).astype(np.float32)


def pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Noise with a 1/f spectrum, closer to room and street noise than white noise."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
    spectrum[0] = 0
    noise = np.fft.irfft(spectrum, n=n)
    return (noise / max(float(np.std(noise)), 1e-9)).astype(np.float32)


def burst(rng: np.random.Generator, tag: str) -> np.ndarray:
    """The sound behind a tag: a broadband knock for n/, a soft low hiss for b/."""
    low, high, seconds, level = (600, 3500, 0.15, 0.3) if tag == "n/" else (150, 1200, 0.35, 0.08)
    n = int(seconds * SAMPLE_RATE)
    noise = band_pass(rng.standard_normal(n).astype(np.float32), low, high)
    return noise / max(float(np.abs(noise).max()), 1e-9) * level * np.hanning(n).astype(np.float32)


def silence(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    return np.zeros(int(rng.uniform(low, high) * SAMPLE_RATE), dtype=np.float32)


def speak(sentence: Sentence, voice: Voice, rng: np.random.Generator) -> np.ndarray:
    """One sentence; n/ and b/ become a noise or breath burst before or after the speech."""
    pieces = [synthesize(sentence.spoken, voice)] if sentence.spoken else []
    for index, tag in sentence.tags:
        if tag not in ("n/", "b/"):
            continue  # overlap and laughter get no sound of their own
        sound = [burst(rng, tag), silence(rng, 0.05, 0.2)]
        pieces = sound + pieces if index == 0 else pieces + sound[::-1]
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def render(
    sentences: list[Sentence],
    voice: Voice,
    condition: str,
    seed: int,
    min_seconds: float = 0.0,
) -> tuple[np.ndarray, int]:
    """Speak sentences in turn until `min_seconds` is reached; return audio and sentences used."""
    rng = np.random.default_rng(seed)
    pieces, used = [speak(sentences[0], voice, rng)], 1
    while used < len(sentences) and sum(map(len, pieces)) < min_seconds * SAMPLE_RATE:
        pieces += [silence(rng, 0.3, 0.7), speak(sentences[used], voice, rng)]
        used += 1
    audio = np.concatenate([silence(rng, 0.1, 0.4), *pieces, silence(rng, 0.1, 0.4)])
    audio = apply_condition(audio, condition, rng)
    return scale(audio, rng.uniform(0.25, MAX_PEAK)), used


def apply_condition(audio: np.ndarray, condition: str, rng: np.random.Generator) -> np.ndarray:
    if condition == "telephone":
        return mu_law_round_trip(band_pass(audio, 300, 3400))
    if condition == "noisy":
        return add_noise(audio, rng, snr_db=rng.uniform(10, 20))
    return audio


def add_noise(audio: np.ndarray, rng: np.random.Generator, snr_db: float) -> np.ndarray:
    # measure speech power on voiced samples only, so leading/trailing silence does not lower it
    voiced = audio[np.abs(audio) > 0.01 * max(float(np.abs(audio).max()), 1e-9)]
    power = float(np.mean(voiced**2)) if len(voiced) else 1e-6
    noise = pink_noise(rng, len(audio)) * np.sqrt(power / 10 ** (snr_db / 10))
    return audio + noise


def scale(audio: np.ndarray, peak: float) -> np.ndarray:
    return (audio * (peak / max(float(np.abs(audio).max()), 1e-9))).astype(np.float32)
