import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from whisper_ko.config import Discover
from whisper_ko_fixtures.sample_corpus import EspeakNotFound, generate, training_texts
from whisper_ko_fixtures.sample_corpus.readings import native, sino

SIZES = {"n_train": 24, "n_val": 8}
DOMAINS = {"D01", "D02", "D03", "D04"}
AUDIO = re.compile(
    r"(?P<top>1\.Training|2\.Validation)/원천데이터_230316/(?P<zip>TS|VS)_(?P<d>D0[1-4])/"
    r"(?P=d)/(?P<j>J\d{2})/(?P<s>S\d{6})/(?P<n>\d{4})\.wav"
)
LABEL = re.compile(
    r"(?P<top>1\.Training|2\.Validation)/라벨링데이터_230316/(?P<zip>TL|VL)_(?P<d>D0[1-4])/"
    r"(?P=d)/(?P<j>J\d{2})/(?P<s>S\d{6})/(?:\d{4}\.txt|(?P=s)\.json)"
)
DUAL_NUMBER = re.compile(r"\(([^()]*\d[^()]*)\)/\(([^()0-9]*[가-힣][^()0-9]*)\)")
TAG = re.compile(r"(?:^|\s|[가-힣?])[nbol]/(?=\s|$)")
GLUED_TAG = re.compile(r"[가-힣][nbol]/")
FILLER = re.compile(r"(?:^|\s)[어음아]/(?=\s|$)")

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "corpus"
    info = generate(out, seed=0, **SIZES)
    return out, info


def relative_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def broken_paths(info: dict) -> set[str]:
    return {path for entry in info["broken"] for path in (entry["audio"], entry["label"]) if path}


def label_for(audio: str) -> str:
    return audio.replace("원천데이터", "라벨링데이터").replace("/TS_", "/TL_").replace("/VS_", "/VL_")[:-4] + ".txt"


def audio_for(label: str) -> str:
    return label.replace("라벨링데이터", "원천데이터").replace("/TL_", "/TS_").replace("/VL_", "/VS_")[:-4] + ".wav"


def good_audio(out: Path, info: dict) -> list[str]:
    broken = broken_paths(info)
    return [f for f in relative_files(out) if f.endswith(".wav") and f not in broken]


def read_label(path: Path) -> str:
    data = path.read_bytes()
    for encoding in ("utf-8", "cp949"):
        try:
            return data.decode(encoding).strip()
        except UnicodeDecodeError:
            continue
    raise AssertionError(f"undecodable label {path}")


def session_jsons(out: Path) -> dict[str, dict]:
    return {
        str(p.relative_to(out)): json.loads(p.read_text(encoding="utf-8-sig")) for p in sorted(out.rglob("S*.json"))
    }


@needs_espeak
def test_layout_is_ai_hubs(corpus):
    out, _ = corpus
    files = relative_files(out)
    assert "sample_info.json" in files
    seen = set()
    for f in files:
        if f == "sample_info.json":
            continue
        match = AUDIO.fullmatch(f) or LABEL.fullmatch(f)
        assert match, f"unexpected path {f}"
        # training zips are TS_/TL_, validation VS_/VL_
        assert match["zip"][0] == ("T" if match["top"] == "1.Training" else "V")
        seen.add((match["top"], match["d"]))
    assert seen == {(top, d) for top in ("1.Training", "2.Validation") for d in DOMAINS}


@needs_espeak
def test_good_audio_is_8k_mono_pcm16_with_mirrored_label(corpus):
    out, info = corpus
    wavs = good_audio(out, info)
    assert len(wavs) == sum(SIZES.values())
    for wav in wavs:
        meta = sf.info(out / wav)
        assert (meta.samplerate, meta.channels, meta.subtype, meta.format) == (
            8000,
            1,
            "PCM_16",
            "WAV",
        )
        assert 0 < meta.frames < 30 * 8000
        label = out / label_for(wav)
        assert label.read_bytes().decode("utf-8").strip(), label


@needs_espeak
def test_counts_match_the_tree(corpus):
    out, info = corpus
    counts = {"training": {d: 0 for d in DOMAINS}, "validation": {d: 0 for d in DOMAINS}}
    for wav in good_audio(out, info):
        match = AUDIO.fullmatch(wav)
        counts["training" if match["top"] == "1.Training" else "validation"][match["d"]] += 1
    assert counts == info["counts"]
    assert sum(counts["training"].values()) == SIZES["n_train"]
    assert sum(counts["validation"].values()) == SIZES["n_val"]


@needs_espeak
def test_session_json_schema_and_paths(corpus):
    out, info = corpus
    documents = session_jsons(out)
    unknowns, listed = set(), set()
    for path, document in documents.items():
        match = LABEL.fullmatch(path)
        data = document["dataSet"]
        assert {"version", "date", "typeInfo", "dialogs"} <= set(data)
        domain = info["domains"][match["d"]]
        assert data["typeInfo"]["category"] == domain["category"]
        assert data["typeInfo"]["subcategory"] == domain["subcategories"][match["j"]]
        speakers = {s["id"]: s for s in data["typeInfo"]["speakers"]}
        assert sorted(s["type"] for s in speakers.values()) == ["고객1", "상담사1"]
        for speaker in speakers.values():
            assert speaker["telephone_network"] == "8k"
            assert speaker["gender"] in ("남", "여", "", "None", "알수없음")
            unknowns |= {v for k, v in speaker.items() if v in ("", "None", "알수없음")}
        session_dir = Path(path).parent
        for dialog in data["dialogs"]:
            assert dialog["speaker"] in speakers
            assert dialog["audioPath"].startswith(f"{match['d']}/{match['j']}/{match['s']}/")
            label = session_dir / Path(dialog["audioPath"]).with_suffix(".txt").name
            assert read_label(out / label) == dialog["text"]
            assert isinstance(dialog["duration"], float)
            listed.add(str(label))
    assert unknowns == {"", "None", "알수없음"}
    good_labels = {label_for(wav) for wav in good_audio(out, info)}
    assert good_labels <= listed


@needs_espeak
def test_one_session_json_has_a_bom(corpus):
    out, info = corpus
    with_bom = [p for p in session_jsons(out) if (out / p).read_bytes().startswith(b"\xef\xbb\xbf")]
    assert with_bom == [info["quirks"]["bom_json"]]


@needs_espeak
def test_labels_use_ai_hub_notation(corpus):
    out, info = corpus
    labels = [read_label(out / label_for(wav)) for wav in good_audio(out, info)]
    assert any(DUAL_NUMBER.search(label) for label in labels)
    assert any(TAG.search(label) for label in labels)
    assert any(FILLER.search(label) for label in labels)
    marked = [label for label in labels if TAG.search(label) or FILLER.search(label) or GLUED_TAG.search(label)]
    assert 0.2 <= len(marked) / len(labels) <= 0.7


@needs_espeak
def test_broken_entries_have_their_defect(corpus):
    out, info = corpus
    entries = {entry["kind"]: entry for entry in info["broken"]}
    assert set(entries) == {
        "corrupt_audio",
        "empty_audio",
        "audio_without_label",
        "label_without_audio",
        "empty_label",
        "cp949_label",
        "long_audio",
        "tags_only",
    }
    for entry in info["broken"]:
        assert entry["audio"] is None or AUDIO.fullmatch(entry["audio"])
        assert entry["label"] is None or LABEL.fullmatch(entry["label"])
        assert entry["audio"] is None or entry["audio"].startswith("1.Training/")

    def audio(kind):
        return out / entries[kind]["audio"]

    def label(kind):
        return out / entries[kind]["label"]

    with pytest.raises(sf.LibsndfileError):
        sf.info(audio("corrupt_audio"))
    assert read_label(label("corrupt_audio"))
    assert sf.info(audio("empty_audio")).frames == 0
    assert read_label(label("empty_audio"))
    assert entries["audio_without_label"]["label"] is None
    assert not (out / label_for(entries["audio_without_label"]["audio"])).exists()
    assert sf.info(audio("audio_without_label")).frames > 0
    assert entries["label_without_audio"]["audio"] is None
    assert not (out / audio_for(entries["label_without_audio"]["label"])).exists()
    assert read_label(label("label_without_audio"))
    assert label("empty_label").stat().st_size == 0
    cp949 = label("cp949_label").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        cp949.decode("utf-8")
    assert re.search("[가-힣]", cp949.decode("cp949"))
    assert sf.info(audio("cp949_label")).frames > 0
    assert sf.info(audio("long_audio")).duration > 30
    assert read_label(label("long_audio"))
    assert set(read_label(label("tags_only")).split()) <= {"n/", "b/", "o/", "l/"}
    assert sf.info(audio("tags_only")).frames > 0


@needs_espeak
def test_label_without_audio_is_listed_in_its_session_json(corpus):
    out, info = corpus
    entry = next(e for e in info["broken"] if e["kind"] == "label_without_audio")
    document = json.loads(
        (out / entry["label"]).with_name(Path(entry["label"]).parent.name + ".json").read_text("utf-8-sig")
    )
    paths = [d["audioPath"] for d in document["dataSet"]["dialogs"]]
    assert "/".join(Path(entry["label"]).with_suffix(".wav").parts[-4:]) in paths


@needs_espeak
def test_a_session_id_repeats_across_domain_folders(corpus):
    out, _ = corpus
    folders: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for f in relative_files(out):
        match = AUDIO.fullmatch(f)
        if match:
            folders.setdefault((match["top"], match["s"]), set()).add((match["d"], match["j"]))
    assert any(len(places) > 1 for places in folders.values())


@needs_espeak
def test_info_is_written_last(corpus):
    out, _ = corpus
    info_mtime = (out / "sample_info.json").stat().st_mtime_ns
    assert all((out / f).stat().st_mtime_ns <= info_mtime for f in relative_files(out))


def hashes(root: Path) -> dict[str, str]:
    return {f: hashlib.sha256((root / f).read_bytes()).hexdigest() for f in relative_files(root)}


@needs_espeak
def test_same_seed_is_byte_identical_and_another_seed_differs(corpus, tmp_path):
    out, info = corpus
    generate(tmp_path / "again", seed=0, workers=1, **SIZES)
    assert hashes(tmp_path / "again") == hashes(out)
    other_info = generate(tmp_path / "other", seed=1, **SIZES)
    ours, theirs = hashes(out), hashes(tmp_path / "other")
    audio = {ours[f] for f in good_audio(out, info)}
    other = {theirs[f] for f in good_audio(tmp_path / "other", other_info)}
    assert not audio & other


@needs_espeak
def test_existing_corpus_is_reused_not_rewritten(corpus):
    out, info = corpus
    before = {f: (out / f).stat().st_mtime_ns for f in relative_files(out)}
    assert generate(out, seed=0, **SIZES) == info
    assert {f: (out / f).stat().st_mtime_ns for f in relative_files(out)} == before
    with pytest.raises(FileExistsError, match="Delete"):
        generate(out, seed=1, **SIZES)


def test_refuses_a_non_empty_directory_without_info(tmp_path):
    (tmp_path / "stray.txt").write_text("x")
    with pytest.raises(FileExistsError):
        generate(tmp_path, seed=0, **SIZES)


def test_missing_espeak_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(EspeakNotFound, match="apt-get install espeak-ng"):
        generate(tmp_path / "corpus", seed=0, **SIZES)


def test_too_small_sizes_are_rejected(tmp_path):
    with pytest.raises(ValueError):
        generate(tmp_path / "corpus", seed=0, n_train=24, n_val=2)


@pytest.mark.parametrize(
    "n, reading",
    [
        (0, "영"),
        (10, "십"),
        (1234, "천이백삼십사"),
        (10000, "만"),
        (35000, "삼만 오천"),
        (123456, "십이만 삼천사백오십육"),
    ],
)
def test_sino_korean_readings(n, reading):
    assert sino(n) == reading


@pytest.mark.parametrize("n, reading", [(1, "한"), (3, "세"), (12, "열두"), (20, "스무"), (24, "스물네")])
def test_native_korean_readings(n, reading):
    assert native(n) == reading


def test_training_texts_are_plain_both_sides_and_deterministic():
    texts = training_texts()
    assert texts == training_texts()
    assert 300 <= len(texts) <= 5000
    assert len(set(texts)) == len(texts)
    assert not any("/" in text or "(" in text for text in texts)
    assert any("%" in text for text in texts) and any("퍼센트" in text for text in texts)
    assert any(re.search(r"010-\d{4}-\d{4}", text) for text in texts)
    assert any("공일공" in text for text in texts)


def test_test_only_sentences_are_never_said_in_training_and_marked_for_the_benchmark(sample_corpus):
    """The last template of every list is reserved for the test side (issue: listening, not
    remembering): its fixed words appear in no training label, and discover carries the mark."""
    from whisper_ko.discover import discover
    from whisper_ko_fixtures.sample_corpus.bank import DOMAINS as BANK
    from whisper_ko_fixtures.sample_corpus.bank import SHARED

    lists = [
        *SHARED.values(),
        *(roles[r] for d in BANK.values() for roles in d["subcategories"].values() for r in ("counsellor", "customer")),
    ]

    def fixed_words(template: str) -> set[str]:  # the words every filling of it says, notation aside
        plain = re.sub(r"\([^)]*\)/\([^)]*\)", "{dual}", template)  # a word glued to one is not fixed
        return {word for word in plain.split() if "{" not in word}

    def said(row: dict, template: str) -> bool:  # fillers may stand between its words, tags are gone
        return fixed_words(template) <= set(row["text"].split())

    reserved = [pool[-1] for pool in lists]
    splits, _ = discover(Discover(root=str(sample_corpus), val_fraction=0.2, seed=0, workers=1))
    train_side = [row for split in ("train", "val") for row in splits[split]]
    assert all(row["sentence"] == "seen" for row in train_side)
    assert not [row["text"] for row in train_side if any(said(row, t) for t in reserved)]
    unseen = [row for row in splits["test"] if row["sentence"] == "unseen"]
    assert 0.25 < len(unseen) / len(splits["test"]) < 0.75  # UNSEEN_SHARE of the test side
    assert all(any(said(row, t) for t in reserved) for row in unseen)
    assert {row["category"] for row in unseen} == DOMAINS
    # each utterance's `template` (what discover.val_by can hold out) is the template its text fills
    rows = train_side + splits["test"]
    assert all(said(row, row["template"]) for row in rows)
    assert all(row["template"] in reserved for row in unseen)
    assert len({row["template"] for row in train_side}) > 20
