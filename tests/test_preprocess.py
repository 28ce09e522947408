import numpy as np
import pytest
import soundfile as sf
import soxr
from test_features import extractor_output

from whisper_ko import audio, features, labels, manifest, preprocess, shards
from whisper_ko.config import Discover, Model, Preprocess
from whisper_ko.discover import discover
from whisper_ko.preprocess import preprocess_split


@pytest.fixture(scope="module")
def rows(sample_corpus):
    splits, _ = discover(Discover(root=str(sample_corpus), val_fraction=0.2, seed=0, workers=1))
    return splits["val"][:12]


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100])
@pytest.mark.parametrize("n_mels", [80, 128])
def test_features_are_exact_whatever_the_input_rate(sample_corpus, tmp_path, rate, n_mels):
    wav = next(sample_corpus.glob("2.Validation/원천데이터_230316/VS_D02/**/0002.wav"))
    speech, sr = sf.read(wav, dtype="float32")
    sf.write(tmp_path / "x.wav", soxr.resample(speech, sr, rate, quality="HQ"), rate, subtype="FLOAT")
    wave = audio.load(tmp_path / "x.wav")
    np.testing.assert_allclose(
        features.pad(features.log_mel(wave, n_mels)), extractor_output(wave, n_mels), atol=1e-5, rtol=0
    )


def test_shards_hold_exact_features_and_prefixed_labels(rows, tiny_model, tmp_path):
    report = preprocess_split(
        rows, tmp_path, Model(base=str(tiny_model)), Preprocess(dtype="float32", shard_size=5, workers=2)
    )
    assert report["kept"] == len(rows) and report["skipped"] == {}
    tok = labels.load_tokenizer(str(tiny_model))
    prefix = tok.convert_tokens_to_ids(["<|startoftranscript|>", "<|ko|>", "<|transcribe|>", "<|notimestamps|>"])
    data = shards.open(tmp_path)
    by_id = {data[i]["id"]: data[i] for i in range(len(data))}
    for row in rows[:4]:
        record = by_id[row["id"]]
        assert record["labels"][:4] == prefix and record["labels"][-1] == tok.eos_token_id
        assert tok.decode(record["labels"], skip_special_tokens=True) == row["text"]
        wave = audio.load(row["audio"])
        assert record["input_features"].shape == (80, (len(wave) + 199) // 160 + 1)
        np.testing.assert_allclose(
            features.pad(record["input_features"]), extractor_output(wave, 80), atol=1e-4, rtol=0
        )


def test_skips_are_counted_with_reasons(rows, tiny_model, tmp_path):
    broken = [dict(rows[0], audio=str(tmp_path / "gone.wav"), id="gone"), dict(rows[1], id="short", duration=0.05)]
    long_text = dict(rows[2], id="long", text=" ".join(["주문하신 상품은 내일 도착합니다"] * 20))
    report = preprocess_split(
        [*rows[3:6], *broken, long_text],
        tmp_path,
        Model(base=str(tiny_model)),
        Preprocess(max_label_tokens=40, workers=1),
    )
    assert report["kept"] == 3 and report["manifest"] == 6
    assert {k: v["examples"] for k, v in report["skipped"].items()} == {
        "audio_unreadable": ["gone"],
        "audio_too_short": ["short"],
        "label_too_long": ["long"],
    }


def test_rerun_after_a_kill_resumes_and_a_changed_param_rebuilds(rows, tiny_model, tmp_path):
    model, settings = Model(base=str(tiny_model)), Preprocess(shard_size=4, workers=2)
    first = preprocess_split(rows, tmp_path, model, settings)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert first["speed"]["processed_now"] == 12 and len(shards.shard_paths(tmp_path)) == 3

    # A kill while shard 1 was being written leaves its data file but no index.
    (tmp_path / "shard-00001.idx.npz").unlink()
    (tmp_path / "shard-00001.bin").write_bytes(b"partial")
    resumed = preprocess_split(rows, tmp_path, model, settings)
    assert resumed["speed"]["processed_now"] == 4
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before

    rebuilt = preprocess_split(rows, tmp_path, model, Preprocess(dtype="float32", shard_size=4, workers=2))
    assert rebuilt["speed"]["processed_now"] == 12 and shards.open(tmp_path)[0]["input_features"].dtype == np.float32

    fewer = preprocess_split(rows[:4], tmp_path, model, Preprocess(dtype="float32", shard_size=4, workers=1))
    assert fewer["speed"]["processed_now"] == 0 and len(shards.open(tmp_path)) == 4  # stale shards removed


def test_a_failed_rewrite_never_leaves_a_shard_that_is_trusted_but_corrupt(rows, tiny_model, tmp_path):
    """A run with other params killed mid-shard, then a run with the first params: the complete
    shard is still whole and trusted; a data file shorter than its index says is rewritten."""
    model, settings = Model(base=str(tiny_model)), Preprocess(shard_size=4, workers=1)
    preprocess_split(rows, tmp_path / "a", model, settings)
    preprocess_split(rows, tmp_path / "b", model, settings)
    clean = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    assert clean == {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}  # same content, same bytes

    killed = shards.ShardWriter(tmp_path / "a" / "shard-00001", 80, "float32", meta={"fingerprint": "other"})
    killed.add("x", np.zeros((80, 5), np.float32), [1, 2], 0.1, None)  # …and the process dies: no close()
    killed.file.flush()
    assert (tmp_path / "a" / "shard-00001.bin").read_bytes() == clean["shard-00001.bin"]  # untouched
    resumed = preprocess_split(rows, tmp_path / "a", model, settings)
    assert (
        resumed["speed"]["processed_now"] == 0 and {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == clean
    )

    (tmp_path / "a" / "shard-00002.bin").write_bytes(b"")  # an index beside a data file it does not describe
    repaired = preprocess_split(rows, tmp_path / "a", model, settings)
    assert (
        repaired["speed"]["processed_now"] == 4
        and {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == clean
    )


def test_a_rerun_verifies_every_shard_and_rewrites_a_corrupt_one(rows, tiny_model, tmp_path):
    """Shards were trusted on their size alone: a rerun kept a corrupt shard."""
    model, settings = Model(base=str(tiny_model)), Preprocess(shard_size=4, workers=1)
    preprocess_split(rows, tmp_path, model, settings)
    clean = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    damaged = bytearray(clean["shard-00001.bin"])
    damaged[len(damaged) // 2] ^= 0x10  # inside a record: same size, same index
    (tmp_path / "shard-00001.bin").write_bytes(damaged)
    rerun = preprocess_split(rows, tmp_path, model, settings)
    assert rerun["speed"]["processed_now"] == 4 and len(rerun["speed"]["repaired"]) == 1
    assert "shard-00001" in rerun["speed"]["repaired"][0] and "fails its checksum" in rerun["speed"]["repaired"][0]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == clean


def test_audio_whose_features_are_not_finite_is_a_recorded_skip(rows, tiny_model, tmp_path):
    """Float audio with finite but huge samples (1e30) passed discover and became NaN features,
    which stopped training at a later step naming no file."""
    loud = tmp_path / "loud.wav"
    sf.write(loud, np.full(16000, 1e30, dtype=np.float32), 16000, subtype="FLOAT")
    report = preprocess_split(
        [*rows[:2], dict(rows[2], id="loud", audio=str(loud), duration=1.0)],
        tmp_path / "features",
        Model(base=str(tiny_model)),
        Preprocess(workers=1),
    )
    assert report["kept"] == 2 and report["skipped"] == {"features_not_finite": {"count": 1, "examples": ["loud"]}}
    data = shards.open(tmp_path / "features")
    assert all(np.isfinite(data[i]["input_features"]).all() for i in range(len(data)))


def test_preprocess_holds_only_the_fields_it_reads_and_one_string_per_repeated_value(tmp_path):
    """A row's raw text and metadata are most of its memory (2.2 KB a row, 11 GB at 5M utterances)."""
    row = {"audio": "a.wav", "duration": 1.0, "text": "네", "raw_text": "네/", "gender": "여", "sample_rate": 8000}
    for split in ("train", "val"):
        manifest.write(
            tmp_path / f"{split}.jsonl",
            [{**row, "id": f"{split}/{i}", "category": "D01", "session": f"{split}/S1"} for i in range(2)],
        )
    found = preprocess.read_manifests(tmp_path)
    assert set(found["train"][0]) == {"id", "audio", "duration", "text", "category", "session"}
    assert found["train"][0]["session"] is found["train"][1]["session"]
