import numpy as np
import pytest
from transformers import WhisperFeatureExtractor

from whisper_ko import audio, features


def extractor_output(wave: np.ndarray, n_mels: int) -> np.ndarray:
    fe = WhisperFeatureExtractor(feature_size=n_mels)
    return fe(wave, sampling_rate=16000, return_tensors="np").input_features[0]


def speech(sample_corpus) -> np.ndarray:
    wav = next(sample_corpus.glob("1.Training/원천데이터_230316/TS_D01/**/0001.wav"))
    return audio.load(wav)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_padded_features_equal_the_extractor_on_speech(sample_corpus, n_mels):
    wave = speech(sample_corpus)
    stored = features.log_mel(wave, n_mels)
    assert stored.shape == (n_mels, (len(wave) + 199) // 160 + 1)
    np.testing.assert_allclose(features.pad(stored), extractor_output(wave, n_mels), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "wave",
    [
        np.zeros(16000, np.float32),  # silence: every frame is the floor, pad value -1.5
        np.full(8000, 1e-6, np.float32),  # near-silent
        np.clip(np.sin(np.arange(24000) / 3.0) * 4, -1, 1).astype(np.float32),  # clipped
        np.random.default_rng(0).standard_normal(16000 * 30).astype(np.float32) * 0.1,  # exactly 30 s
        np.random.default_rng(1).standard_normal(16000 * 31).astype(np.float32) * 0.1,  # cut at 30 s
    ],
    ids=["silence", "near-silent", "clipped", "30s", "31s"],
)
def test_padded_features_equal_the_extractor_on_edge_cases(wave):
    np.testing.assert_allclose(features.pad(features.log_mel(wave, 80)), extractor_output(wave, 80), atol=1e-5, rtol=0)


def test_pad_value_is_the_clamped_floor():
    feats = np.array([[0.5, 0.25]], np.float32)
    assert features.pad(feats, 4).tolist() == [[0.5, 0.25, -1.5, -1.5]]
    feats = np.array([[1.25, 0.0]], np.float32)
    assert features.pad(feats, 3)[0, 2] == pytest.approx(-0.75)


def test_audio_load_resamples_8k_and_downmixes(tmp_path):
    import soundfile as sf

    t = np.arange(8000) / 8000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1).astype(np.float32) * 0.5
    sf.write(tmp_path / "x.wav", stereo, 8000, subtype="PCM_16")
    wave = audio.load(tmp_path / "x.wav")
    assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) == 16000
    assert np.abs(wave).max() == pytest.approx(0.25, abs=0.01)  # mean of the two channels


def test_audio_load_reads_headerless_pcm_and_rejects_garbage(tmp_path):
    (tmp_path / "a.pcm").write_bytes((np.arange(160, dtype="<i2") * 100).tobytes())
    assert audio.load(tmp_path / "a.pcm")[1] == pytest.approx(100 / 32768)
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really a wav")
    with pytest.raises(audio.AudioError, match=r"bad.wav"):
        audio.load(tmp_path / "bad.wav")


@pytest.mark.parametrize(
    ("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("WAV", "PCM_24"), ("WAV", "FLOAT")]
)
def test_audio_load_gives_libsndfiles_samples_for_every_encoding(tmp_path, fmt, subtype):
    import soundfile as sf

    # Full scale, both extremes and every small value: 16-bit files are read as int16 and scaled.
    signal = np.concatenate([np.linspace(-1, 1 - 2**-15, 16000), np.arange(-300, 300) / 32768]).astype(np.float32)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, signal, 16000, format=fmt, subtype=subtype)
    expected, _ = sf.read(path, dtype="float32")
    np.testing.assert_array_equal(audio.load(path), expected)
