"""Packed training windows (preprocess.pack): planning, labels token by token, exact features on the
concatenated audio, the shares, splits, composition with augmentation, reruns and the report."""

import itertools
from collections import Counter

import numpy as np
import pytest
import torch
from test_features import extractor_output

from whisper_ko import audio, dims, features, labels, packing, shards
from whisper_ko.collate import IGNORE_INDEX, Collator
from whisper_ko.config import Discover, Model, Pack, ParamsError, Preprocess
from whisper_ko.discover import discover
from whisper_ko.preprocess import plan, preprocess_split


@pytest.fixture(scope="module")
def rows(sample_corpus):
    splits, _ = discover(Discover(root=str(sample_corpus), val_fraction=0.2, seed=0, workers=1))
    return splits["train"]


@pytest.fixture(scope="module")
def tok(tiny_model):
    return labels.load_tokenizer(str(tiny_model))


def packed(**pack) -> Preprocess:
    return Preprocess(dtype="float32", workers=1, pack=Pack(**{"by": "session", **pack}))


def records(directory) -> dict[str, dict]:
    data = shards.open(directory)
    return {record["id"]: record for record in (data[i] for i in range(len(data)))}


# ---------------------------------------------------------------- planning


def test_session_windows_hold_a_sessions_consecutive_utterances_in_order(rows):
    windows = packing.windows(rows, Pack(by="session"), seed=0)
    order = {row["id"]: i for i, row in enumerate(rows)}
    assert sorted(p["id"] for w in windows for p in w.parts) == sorted(order)  # each utterance once
    for window in windows:
        assert len({p["session"] for p in window.parts}) == 1
        positions = [order[p["id"]] for p in window.parts]
        assert positions == list(range(positions[0], positions[0] + len(positions)))  # consecutive, in order
        assert window.duration <= 30.0 and window.id == f"{window.parts[0]['id']}+{len(window.parts)}"
    # a session's windows follow each other: the next window starts where the last one ended
    sessions = Counter(p["session"] for w in windows for p in w.parts)
    assert sum(1 for w in windows if len(w.parts) > 1) > len(sessions) / 2


def test_category_windows_are_seeded_groups_within_a_category(rows):
    pack = Pack(by="category")
    windows = packing.windows(rows, pack, seed=0)
    assert all(len({p["category"] for p in w.parts}) == 1 for w in windows)
    assert any(len({p["session"] for p in w.parts}) > 1 for w in windows)  # across sessions
    order = {row["id"]: i for i, row in enumerate(rows)}
    shuffled = [[order[p["id"]] for p in w.parts] for w in windows]
    assert sum(positions != sorted(positions) for positions in shuffled) > len(windows) / 2  # a seeded order
    assert windows == packing.windows(rows, pack, seed=0)
    assert [w.id for w in packing.windows(rows, pack, seed=1)] != [w.id for w in windows]
    by_session = packing.windows(rows, Pack(by="session"), seed=0)
    assert sum(len(w.parts) for w in windows) / len(windows) > sum(len(w.parts) for w in by_session) / len(by_session)


def test_category_windows_fill_by_first_fit():
    """Each utterance goes to the first open window it fits: on telephone-like durations windows
    come out nearly full, where one open window wastes a tenth."""
    durations = np.clip(np.random.default_rng(0).gamma(4.0, 4.6 / 4.0, 2000), 0.5, 29.0)
    rows = [
        {"id": f"u{i:04d}", "duration": float(d), "category": "c", "session": f"s{i // 40}"}
        for i, d in enumerate(durations)
    ]

    def fill(windows):
        assert sorted(p["id"] for w in windows for p in w.parts) == [r["id"] for r in rows]
        assert all(w.duration <= 30.0 for w in windows)
        return sum(w.duration for w in windows) / (30.0 * len(windows))

    pack = Pack(by="category")
    assert fill(packing.windows(rows, pack, 0)) > 0.95 > fill(packing.windows(rows, pack, 0, open_windows=1))


def test_windows_fill_up_to_max_s_with_seeded_gaps_in_range(rows):
    for max_s in (12.0, 30.0):
        pack = Pack(by="session", max_s=max_s, gap_s=[0.2, 0.4])
        windows = packing.windows(rows, pack, seed=0)
        for w in windows:
            assert w.duration <= max_s or len(w.parts) == 1
            assert len(w.gaps) == len(w.parts) - 1 and all(0.2 <= g <= 0.4 for g in w.gaps)
        # each window ends because the next utterance of its session would not fit
        following = {w.parts[0]["id"]: w for w in windows}
        for w, nxt in itertools.pairwise(windows):
            if nxt.parts[0]["session"] == w.parts[-1]["session"] and nxt.parts[0]["id"] in following:
                assert w.duration + 0.2 + nxt.parts[0]["duration"] > max_s
        assert len(packing.windows(rows, Pack(by="session", max_s=12.0), 0)) > len(
            packing.windows(rows, Pack(by="session"), 0)
        )
    gaps = [g for w in packing.windows(rows, Pack(by="session", gap_s=[0.0, 2.0]), 0) for g in w.gaps]
    assert len(set(gaps)) > len(gaps) / 2  # drawn, not one value


def test_shares_of_timestamped_windows_and_single_utterances_are_seeded(rows):
    for share in (0.0, 0.5, 1.0):
        windows = packing.windows(rows, Pack(by="session", timestamps=share), seed=0)
        stamped = sum(w.timestamps for w in windows) / len(windows)
        assert stamped == share if share in (0.0, 1.0) else 0.25 < stamped < 0.75
    single = packing.singles(rows, 0.3, seed=0)
    assert 0.15 * len(rows) < len(single) < 0.45 * len(rows)
    assert all(len(w.parts) == 1 and not w.packed and not w.timestamps and w.id == w.parts[0]["id"] for w in single)
    # a choice belongs to the utterance: dropping others does not change it
    chosen = {w.id for w in single}
    assert {w.id for w in packing.singles(rows[::2], 0.3, seed=0)} == chosen & {r["id"] for r in rows[::2]}


def test_plan_packs_training_copies_and_keeps_val_single(rows):
    config = Preprocess(speed_perturb=[0.9], pack=Pack(by="session", single=0.25))
    train = plan(rows, config, augment=True)
    assert set(train) == {"pack", "shard", "packspeed090", "speed090"}
    assert all(w.packed for w in train["packspeed090"]) and all("#speed0.9" in w.id for w in train["packspeed090"])
    assert sum(len(w.parts) for w in train["pack"]) == len(rows)
    val = plan(rows, config)
    assert set(val) == {"shard"} and len(val["shard"]) == len(rows) and not any(w.packed for w in val["shard"])
    off = plan(rows, Preprocess(pack=Pack(by=None)), augment=True)
    assert set(off) == {"shard"} and len(off["shard"]) == len(rows)


@pytest.mark.parametrize(
    "pack, message",
    [
        ({"by": "speaker"}, "preprocess.pack.by"),
        ({"max_s": 45}, "preprocess.pack.max_s"),
        ({"gap_s": [0.5, 0.1]}, "preprocess.pack.gap_s"),
        ({"timestamps": 1.5}, "preprocess.pack.timestamps"),
        ({"single": -0.1}, "preprocess.pack.single"),
    ],
)
def test_bad_pack_settings_are_one_line_errors(pack, message):
    with pytest.raises(ParamsError, match=message.replace(".", r"\.")):
        Preprocess(**{"pack": pack})


# ---------------------------------------------------------------- labels


def test_window_labels_token_by_token(tok, tiny_model):
    """Timestamps, <|notimestamps|>, end of text; the collator strips the start token once and
    trains on every timestamp."""
    ids = tok.convert_tokens_to_ids
    sot, ko, transcribe, notimestamps = ids(["<|startoftranscript|>", "<|ko|>", "<|transcribe|>", "<|notimestamps|>"])
    eot = tok.eos_token_id
    texts = ["네 알겠습니다", "주문하신 상품은 내일 도착합니다"]
    first = tok(texts[0], add_special_tokens=False).input_ids
    second = tok(" " + texts[1], add_special_tokens=False).input_ids
    encoded = labels.tokens(tok, texts)

    plain = labels.window_ids(tok, encoded)
    assert plain == [sot, ko, transcribe, notimestamps, *first, *second, eot]
    assert tok.decode(plain, skip_special_tokens=True) == " ".join(texts)

    stamped = labels.window_ids(tok, encoded, [(0.0, 1.234), (1.7, 4.52)])
    t = ids("<|0.00|>")
    assert stamped == [sot, ko, transcribe, t, *first, t + 62, t + 85, *second, t + 226, eot]
    assert ids(["<|1.24|>", "<|1.70|>", "<|4.52|>"]) == [t + 62, t + 85, t + 226]
    assert tok.decode(stamped, skip_special_tokens=True) == " ".join(texts)
    for built, timestamped in ((plain, False), (stamped, True)):
        assert labels.window_length(encoded, timestamped) == len(built)

    # one utterance alone: exactly the tokenizer's own labels
    assert labels.encode(tok, texts[:1])[0] == tok(texts[0]).input_ids

    batch = Collator(sot)([{"input_features": np.zeros((80, 10), np.float32), "labels": stamped}])["labels"][0]
    assert batch.tolist() == stamped[1:]  # SOT stripped once, nothing masked
    assert (batch >= t).sum() == 4 and IGNORE_INDEX not in batch.tolist()


# ---------------------------------------------------------------- written windows


def test_packed_windows_hold_exact_features_of_the_concatenated_audio(rows, tiny_model, tmp_path):
    report = preprocess_split(rows[:14], tmp_path, Model(base=str(tiny_model)), packed(timestamps=1.0), augment=True)
    assert report["kept"] == 14 and report["windows"]["utterances"] == 14
    windows = {w.id: w for w in packing.windows(rows[:14], Pack(by="session", timestamps=1.0), seed=0)}
    written = records(tmp_path)
    assert set(written) == set(windows)
    several = [w for w in windows.values() if len(w.parts) >= 3]
    assert several
    for window in several[:2]:
        waves = [audio.load(p["audio"]) for p in window.parts]
        wave, spans = packing.concatenate(waves, window.gaps)
        # the silence between utterances is there, as drawn
        start = len(waves[0])
        gap = round(window.gaps[0] * dims.SAMPLE_RATE)
        assert (
            not wave[start : start + gap].any()
            and wave[start + gap : start + gap + len(waves[1])].tolist() == waves[1].tolist()
        )
        record = written[window.id]
        assert record["utterances"] == len(window.parts)
        np.testing.assert_allclose(
            features.pad(record["input_features"]), extractor_output(wave, 80), atol=1e-4, rtol=0
        )
        # per-clip features concatenated would be wrong: Whisper normalises by the window's maximum
        glued = np.concatenate([features.log_mel(w, 80) for w in waves], axis=1)[:, : record["input_features"].shape[1]]
        assert np.abs(glued - record["input_features"][:, : glued.shape[1]]).max() > 0.1
        t0 = labels.timestamp_id(labels.load_tokenizer(str(tiny_model)), 0.0)
        stamps = [(i - t0) * 0.02 for i in record["labels"] if i >= t0]
        expected = [round(s / 0.02) * 0.02 for span in spans for s in span]
        np.testing.assert_allclose(stamps, expected, atol=1e-9)


def test_a_window_over_the_label_limit_is_split_never_truncated(rows, tiny_model, tok, tmp_path):
    window_rows = rows[:14]
    report = preprocess_split(
        window_rows, tmp_path, Model(base=str(tiny_model)), packed(timestamps=0.0, max_s=30.0), augment=True
    )
    longest = report["windows"]["tokens_max"]
    limit = longest - 10  # the longest window no longer fits
    tight = tmp_path / "tight"
    report = preprocess_split(
        window_rows,
        tight,
        Model(base=str(tiny_model)),
        Preprocess(**{**packed(timestamps=0.0).__dict__, "max_label_tokens": limit}),
        augment=True,
    )
    assert report["kept"] == len(window_rows) and report["skipped"] == {}
    written = records(tight)
    assert report["windows"]["tokens_max"] <= limit and all(len(r["labels"]) <= limit for r in written.values())
    assert sum(r["utterances"] for r in written.values()) == len(window_rows)
    text = " ".join(
        tok.decode(r["labels"], skip_special_tokens=True) for r in sorted(written.values(), key=lambda r: r["id"])
    )
    assert sorted(text.split()) == sorted(" ".join(r["text"] for r in window_rows).split())  # every word kept
    assert len(written) > len(records(tmp_path))


def test_a_changed_pack_setting_rewrites_only_what_it_changes(rows, tiny_model, tmp_path):
    model = Model(base=str(tiny_model))
    settings = Preprocess(workers=1, shard_size=3, pack=Pack(by="session", timestamps=0.5, single=0.3))
    first = preprocess_split(rows[:24], tmp_path, model, settings, augment=True)
    assert first["speed"]["processed_now"] == first["kept"] + sum(v["count"] for v in first["skipped"].values())
    assert preprocess_split(rows[:24], tmp_path, model, settings, augment=True)["speed"]["processed_now"] == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    changed = Preprocess(workers=1, shard_size=3, pack=Pack(by="session", timestamps=0.5, single=0.6))
    again = preprocess_split(rows[:24], tmp_path, model, changed, augment=True)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert all(after[name] == data for name, data in before.items() if name.startswith("pack-"))  # windows kept
    assert 0 < again["speed"]["processed_now"] <= again["kept"] - again["windows"]["utterances"]  # singles only


def test_report_counts_utterances_windows_fill_and_tokens(rows, tiny_model, tmp_path):
    broken = dict(rows[1], audio=str(tmp_path / "gone.wav"))
    batch = [rows[0], broken, *rows[2:20]]
    report = preprocess_split(batch, tmp_path, Model(base=str(tiny_model)), packed(single=0.5), augment=True)
    windows = report["windows"]
    single = windows["single_planned"]
    assert report["skipped"]["audio_unreadable"]["count"] == 1 + (
        broken["id"] in {w.id for w in packing.singles(batch, 0.5, 0)}
    )
    assert (
        report["kept"] + sum(v["count"] for v in report["skipped"].values()) == len(batch) + single
    )  # found = kept + skipped
    assert windows["utterances"] == len(batch) - 1
    assert windows["count"] == sum(windows["by_utterances"].values())
    assert windows["utterances"] == sum(int(n) * c for n, c in windows["by_utterances"].items())
    assert 0.5 < windows["speech_fill"] < 1 and windows["tokens_per_window"] <= windows["tokens_max"]
    data = shards.open(tmp_path)
    assert len(data) == report["records"] and data.utterances() == report["kept"]


def test_suppress_lists_leave_timestamps_to_generate_in_both_modes(tiny_model):
    """Timestamp tokens must be neither suppressed (the timestamped mode predicts them) nor left to
    the plain mode (generate forces <|notimestamps|> there)."""
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration.from_pretrained(tiny_model).eval()
    tok = labels.load_tokenizer(str(tiny_model))
    first = labels.timestamp_id(tok, 0.0)
    config = model.generation_config
    assert not [i for i in config.suppress_tokens if i >= first] and config.no_timestamps_token_id == first - 1
    feats = torch.from_numpy(features.pad(features.log_mel(np.zeros(16000, np.float32) + 0.01, 80)))[None]
    with torch.no_grad():
        stamped = model.generate(feats, language="ko", return_timestamps=True, max_new_tokens=8)
        plain = model.generate(feats, language="ko", max_new_tokens=8)
    stamped = stamped if isinstance(stamped, torch.Tensor) else stamped["sequences"]
    assert stamped[0][0] >= first  # a segment opens with its start time
    assert not (plain[0] >= first).any()  # the plain mode never emits one


def test_a_part_whose_features_are_not_finite_is_skipped_and_its_window_written_without_it(rows, tiny_model, tmp_path):
    import soundfile as sf

    loud = tmp_path / "loud.wav"
    sf.write(loud, np.full(16000, 1e30, dtype=np.float32), 16000, subtype="FLOAT")
    session = [r for r in rows if r["session"] == rows[0]["session"]][:3]
    batch = [session[0], dict(session[1], audio=str(loud), duration=1.0), session[2]]
    report = preprocess_split(batch, tmp_path / "f", Model(base=str(tiny_model)), packed(), augment=True)
    assert report["skipped"] == {"features_not_finite": {"count": 1, "examples": [session[1]["id"]]}}
    (record,) = records(tmp_path / "f").values()
    assert record["utterances"] == 2 and np.isfinite(record["input_features"]).all()
