"""Every corpus layout discover supports, on fixtures the tests build."""

import itertools
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from whisper_ko.config import Discover
from whisper_ko.discover import discover
from whisper_ko.layouts import detect

PITCHES = itertools.count(220, 7)  # every clip its own: discover drops training copies of test audio


def tone(seconds: float, sr: int = 16000, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    wave = (0.1 * np.sin(2 * np.pi * next(PITCHES) * t)).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def without_volatile(rows):
    return [{k: v for k, v in r.items() if k != "audio"} for r in rows]


def test_aihub_without_zip_level_and_date_suffix_gives_the_same_manifests(sample_corpus, tmp_path):
    flat = tmp_path / "flat"
    for split in ("1.Training", "2.Validation"):
        for tree in (sample_corpus / split).iterdir():
            base = "원천데이터" if tree.name.startswith("원천") else "라벨링데이터"
            for zip_level in tree.iterdir():  # TS_D01 → merged away
                shutil.copytree(zip_level, flat / split / base, dirs_exist_ok=True)
    original, report = discover(Discover(root=str(sample_corpus), seed=0, workers=1))
    renamed, report2 = discover(Discover(root=str(flat), seed=0, workers=1))
    assert detect(flat) == "aihub"
    for split in original:
        assert without_volatile(renamed[split]) == without_volatile(original[split])
    assert report2["skipped"].keys() == report["skipped"].keys()


def test_aihub_uppercase_wav_and_three_digit_j(tmp_path):
    audio = tmp_path / "1.Training/원천데이터/D02/J020/S000001/0001.WAV"
    label = tmp_path / "1.Training/라벨링데이터/D02/J020/S000001/0001.txt"
    audio.parent.mkdir(parents=True)
    label.parent.mkdir(parents=True)
    sf.write(audio, tone(1.0, 8000), 8000, subtype="PCM_16")
    label.write_text("네 (3)/(삼) 번이요", encoding="utf-8")
    splits, report = discover(Discover(root=str(tmp_path), val_fraction=0, seed=0, workers=1), need_val=False)
    (row,) = splits["train"]
    assert row["id"] == "train/D02/J020/S000001/0001" and row["category"] == "D02" and row["text"] == "네 3 번이요"
    assert report["found"] == 1


@pytest.fixture()
def kspon(tmp_path):
    root = tmp_path / "kspon"
    texts = {
        "KsponSpeech_01/KsponSpeech_0001/KsponSpeech_000001": "b/ 그래서 (3)/(세) 개 샀어",
        "KsponSpeech_01/KsponSpeech_0001/KsponSpeech_000002": "어/ 진짜? 몰랐어",
        "KsponSpeech_01/KsponSpeech_0002/KsponSpeech_001001": "o/ 그건 좀 아닌 것 같은데",
        "KsponSpeech_eval/eval_clean/KsponSpeech_E00001": "오늘 날씨 좋다",
        "KsponSpeech_eval/eval_other/KsponSpeech_E03001": "n/ 뭐라고?",
    }
    for rel, text in texts.items():
        pcm = root / f"{rel}.pcm"
        pcm.parent.mkdir(parents=True, exist_ok=True)
        pcm.write_bytes((tone(1.5) * 32767).astype("<i2").tobytes())
        pcm.with_suffix(".txt").write_bytes(text.encode("cp949"))
    (root / "KsponSpeech_01/KsponSpeech_0002/KsponSpeech_001002.pcm").write_bytes(b"\x00")  # odd byte count
    return root, texts


def test_kspon_pcm_with_cp949_labels(kspon):
    root, texts = kspon
    splits, report = discover(
        Discover(root=str(root), category_pattern=None, val_fraction=0, seed=0, workers=1), need_val=False
    )
    assert report["layout"] == "kspon"
    assert {r["category"] for r in splits["test"]} == {"eval_clean", "eval_other"}
    assert {r["id"] for r in splits["train"]} == {f"train/{k}" for k in texts if "eval" not in k}
    row = next(r for r in splits["train"] if r["id"].endswith("000001"))
    assert row["text"] == "그래서 3 개 샀어" and row["sample_rate"] == 16000 and row["duration"] == 1.5
    assert report["kept_input"]["label_encoding"] == {"cp949": 5}
    assert report["skipped"]["audio_without_label"]["count"] == 1  # the odd-sized pcm has no label either
    assert report["found"] == 6


def test_kspon_trn_scripts_give_splits_and_labels(kspon):
    root, texts = kspon
    for txt in root.rglob("*.txt"):
        txt.unlink()
    (root / "train.trn").write_text(
        "".join(f"{k}.pcm :: {v}\n" for k, v in texts.items() if "eval" not in k), encoding="utf-8"
    )
    for name in ("eval_clean", "eval_other"):
        lines = [f"{k}.pcm :: {v}\n" for k, v in texts.items() if name in k]
        (root / f"{name}.trn").write_text("".join(lines), encoding="utf-8")
    splits, report = discover(
        Discover(root=str(root), category_pattern=None, val_fraction=0, seed=0, workers=1), need_val=False
    )
    assert len(splits["train"]) == 3 and len(splits["test"]) == 2
    assert report["kept_input"]["label_encoding"] == {"inline": 5}
    assert report["skipped"]["audio_without_label"]["count"] == 1


def test_plain_pairs_with_split_folders_any_rate_and_stereo(tmp_path):
    for i, (split, cat) in enumerate([("train", "news"), ("train", "call"), ("train", "call"), ("test", "news")]):
        wav = tmp_path / split / cat / f"spk{i}" / f"utt{i}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        sf.write(wav, tone(1.0, 22050 if i == 1 else 16000, channels=2 if i == 2 else 1), 22050 if i == 1 else 16000)
        wav.with_suffix(".txt").write_text("\ufeff안녕하세요" if i == 3 else "네 알겠습니다", encoding="utf-8")
    (tmp_path / "train/call/orphan.txt").write_text("소리 없는 라벨", encoding="utf-8")
    splits, report = discover(
        Discover(root=str(tmp_path), layout="plain", category_pattern="news|call", val_fraction=0, workers=1),
        need_val=False,
    )
    assert report["layout"] == "plain"
    assert [r["category"] for r in splits["train"]] == ["call", "call", "news"]
    assert splits["test"][0]["text"] == "안녕하세요"
    assert report["kept_input"]["channels"] == {"1": 3, "2": 1}
    assert report["kept_input"]["sample_rate"] == {"16000": 3, "22050": 1}
    assert report["skipped"]["label_without_audio"]["count"] == 1


def test_plain_tree_without_test_side_holds_out_sessions(tmp_path):
    for s in range(10):
        for u in range(3):
            wav = tmp_path / f"speaker{s:02d}" / f"{u}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(wav, tone(0.5), 16000)
            wav.with_suffix(".txt").write_text("네", encoding="utf-8")
    splits, _ = discover(
        Discover(root=str(tmp_path), category_pattern=None, val_fraction=0.2, test_fraction=0.2, seed=1, workers=1)
    )
    sessions = {name: {r["session"] for r in rows} for name, rows in splits.items()}
    assert len(sessions["test"]) == 2 and len(sessions["val"]) == 2 and len(sessions["train"]) == 6
    assert not (sessions["train"] & sessions["test"]) and not (sessions["train"] & sessions["val"])


def test_jsonl_manifest_passes_through_validation(tmp_path):
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio/a.wav", tone(1.0), 16000)
    sf.write(tmp_path / "audio/b.wav", tone(40.0, 8000), 8000)
    lines = [
        {
            "audio_filepath": "audio/a.wav",
            "text": "(10시)/(열 시)에 봬요",
            "duration": 1.0,
            "gender": "여",
            "age": "알수없음",
        },
        {"audio_filepath": "audio/b.wav", "text": "너무 긴 클립", "duration": 40.0},
        {"audio_filepath": "audio/missing.wav", "text": "없는 파일", "duration": 1.0},
        {"audio_filepath": "audio/a.wav", "text": "", "duration": 1.0, "id": "dup-empty"},
    ]
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines) + "{not json\n")
    splits, report = discover(
        Discover(root=str(manifest), category_pattern=None, val_fraction=0, seed=0, workers=1), need_val=False
    )
    (row,) = splits["train"]
    assert row["text"] == "10시에 봬요" and row["gender"] == "여" and row["age"] is None
    assert {k: v["count"] for k, v in report["skipped"].items()} == {
        "audio_too_long": 1,
        "audio_missing": 1,
        "empty_label": 1,
        "manifest_line_invalid": 1,
    }
    assert report["found"] == 5


def test_max_per_category_is_a_seeded_subset_and_counted(sample_corpus):
    a, report = discover(Discover(root=str(sample_corpus), max_per_category=3, seed=0, workers=1))
    b, _ = discover(Discover(root=str(sample_corpus), max_per_category=3, seed=0, workers=1))
    assert a == b
    assert all(n <= 3 for per in report["kept"].values() for n in per.values())
    assert report["found"] == report["kept_total"] + report["skipped_total"]
    assert report["skipped"]["over_max_per_category"]["count"] > 0
