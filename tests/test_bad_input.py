"""Bad input never becomes a wrong model or a lost run: each case a user or an adversary can make,
on a small corpus or file the test builds itself."""

import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from conftest import REPO, stage, training_paths
from whisper_ko import inference, scheduling, shards
from whisper_ko.config import Benchmark, Discover, Fallback, Model, ParamsError, Preprocess, Train, load, validate
from whisper_ko.discover import DiscoverError, discover
from whisper_ko.preprocess import preprocess_split
from whisper_ko.training import TrainingError, finetune

PITCHES = itertools.count(200, 11)


def clip(path, seconds=1.0, sr=8000, samples=None, subtype="PCM_16"):
    """A distinct tone (or the given samples) written to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    wave = samples if samples is not None else 0.2 * np.sin(2 * np.pi * next(PITCHES) * t)
    sf.write(path, np.asarray(wave, dtype=np.float32), sr, subtype=subtype)
    return path


def aihub_utterance(root, side, key, text, **audio):
    """One utterance of an AI Hub tree: `side` 1.Training or 2.Validation, `key` D/J/S/number."""
    clip(root / side / "원천데이터" / f"{key}.wav", **audio)
    label = root / side / "라벨링데이터" / f"{key}.txt"
    label.parent.mkdir(parents=True, exist_ok=True)
    label.write_text(text, encoding="utf-8")


def run_stage(name, workdir, monkeypatch, edit):
    """The stage run in `workdir` with params.yaml edited by `edit(params)`: (exit code, output)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    edit(params)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    monkeypatch.chdir(workdir)
    result = CliRunner().invoke(stage(name).main, ["--params", "params.yaml"])
    return result.exit_code, result.output


# ---------------------------------------------------------------- 1. non-finite audio, loss, weights


def test_non_finite_audio_is_a_recorded_skip_in_discover_and_preprocess(tmp_path, tiny_model):
    nan = np.full(8000, np.nan, dtype=np.float32)
    aihub_utterance(tmp_path, "1.Training", "D01/J01/S000001/0001", "네 알겠습니다", samples=nan, subtype="FLOAT")
    aihub_utterance(tmp_path, "1.Training", "D01/J01/S000001/0002", "감사합니다")
    splits, report = discover(Discover(root=str(tmp_path), val_fraction=0, workers=1), need_val=False)
    assert report["skipped"]["audio_not_finite"]["count"] == 1 and len(splits["train"]) == 1
    # a manifest made elsewhere still cannot bring it in
    rows = [{**splits["train"][0], "id": "nan", "audio": str(next(tmp_path.rglob("0001.wav")))}, splits["train"][0]]
    out = preprocess_split(rows, tmp_path / "features", Model(base=str(tiny_model)), Preprocess(workers=1))
    assert out["kept"] == 1 and out["skipped"]["audio_not_finite"] == {"count": 1, "examples": ["nan"]}


@pytest.fixture
def nan_features(tmp_path, tiny_model):
    """Shards whose second training record holds NaN features (written past preprocess's checks)."""
    from whisper_ko import labels

    ids = labels.encode(labels.load_tokenizer(str(tiny_model)), ["네 알겠습니다"])[0]
    for split, poisoned in (("train", True), ("val", False)):
        writer = shards.ShardWriter(tmp_path / "features" / split / "shard-00000", 80)
        for i in range(4):
            feats = np.full((80, 100), np.nan if poisoned and i == 1 else -0.5, dtype=np.float32)
            writer.add(f"{split}-{i}", feats, ids, 1.0, "D01")
        writer.close()
    return tmp_path / "features"


def test_a_non_finite_loss_stops_training_naming_the_step_and_saves_nothing(nan_features, tiny_model, tmp_path):
    config = Train(max_steps=4, per_device_train_batch_size=1, eval_steps=2, eval_max_new_tokens=4, learning_rate=1e-3)
    paths = training_paths(nan_features, tmp_path)
    with pytest.raises(TrainingError, match=r"the training loss became nan at step \d: non-finite features"):
        finetune(Model(base=str(tiny_model)), config, paths, log=lambda _: None)
    assert not (tmp_path / "out").exists()


@pytest.mark.models
def test_a_model_with_non_finite_weights_is_refused_by_the_benchmark(tiny_model, tmp_path, sample_corpus):
    broken = tmp_path / "diverged"
    shutil.copytree(tiny_model, broken)
    weights = load_file(str(broken / "model.safetensors"))
    weights["model.decoder.layers.0.fc1.weight"][0, 0] = float("nan")
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    rows = discover(Discover(root=str(sample_corpus), workers=1))[0]["test"][:2]
    settings = Benchmark(
        max_new_tokens=4, batch_size=2, cpu_workers=1, warmup_batches=0, fallback=Fallback(apply=False)
    )
    options = scheduling.Options.of(settings, Model(base=str(tiny_model)))
    with pytest.raises(scheduling.BenchmarkError) as failure:
        scheduling.transcribe({"diverged": str(broken)}, rows, options)
    message = str(failure.value)
    assert "model 'diverged', while loading it:" in message and "non-finite weights" in message
    assert "Traceback" not in message and len(message.splitlines()) == 1


def test_a_test_clip_whose_features_are_not_finite_is_an_error_of_that_clip_not_of_its_batch(tmp_path, sample_corpus):
    """The benchmark featurises a batch at once: one clip of huge float samples must be recorded
    against that clip, the others decoded."""
    loud = tmp_path / "loud.wav"
    sf.write(loud, np.full(16000, 1e30, dtype=np.float32), 16000, subtype="FLOAT")
    good = discover(Discover(root=str(sample_corpus), workers=1))[0]["test"][0]["audio"]
    feats, ok, errors = inference.featurize([good, str(loud)], 80)
    assert ok == [0] and feats.shape == (1, 80, 3000)
    assert list(errors) == [1] and "not finite" in errors[1]


# ---------------------------------------------------------------- 2, 3, 10. params


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("train", {"num_train_epochs": 0}, "train.num_train_epochs is 0 with max_steps -1: that trains nothing"),
        ("train", {"num_train_epochs": -1, "max_steps": -1}, "that trains nothing"),
        ("train", {"max_steps": 0}, "train.max_steps must be -1 (use epochs) or positive"),
        (
            "train",
            {"per_device_train_batch_size": "sixteen"},
            "train.per_device_train_batch_size: expected an integer, got 'sixteen'",
        ),
        ("train", {"learnig_rate": 1e-5}, "unknown parameter(s) train.learnig_rate; known:"),
        ("train", {"gradient_checkpointing": "yes"}, "train.gradient_checkpointing: expected true or false, got 'yes'"),
        ("train", {"lora": {"r": 0}}, "train.lora.r must be at least 1, got 0"),
        (
            "model",
            {"attention": "flash"},
            "model.attention 'flash': choose one of sdpa, auto, flash_attention_2, eager",
        ),
        (
            "benchmark",
            {"models": {"finetuned": "models/other"}},
            "benchmark.models: `finetuned` is the pipeline's own fine-tune",
        ),
        ("discover", {"layout": "aihub2"}, "discover.layout 'aihub2': choose one of auto, aihub, kspon, plain, jsonl"),
        ("preprocess", {"workers": 0}, "preprocess.workers must be at least 1, got 0"),
    ],
)
def test_every_parameter_is_checked_with_a_message_naming_it(tmp_path, section, values, message):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params[section].update(values)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    with pytest.raises(ParamsError) as failure:
        load(tmp_path / "params.yaml", section)
    assert message in str(failure.value) and str(failure.value).startswith(f"{tmp_path / 'params.yaml'}: ")
    assert "\n" not in str(failure.value)


def test_defaults_live_in_the_config_and_params_yaml_sets_every_one(tmp_path):
    document = yaml.safe_load((REPO / "params.yaml").read_text())
    assert validate(Train, {}) == Train()  # every train setting has its default in one place
    for section, values in document.items():
        loaded = load(REPO / "params.yaml", section)[0]
        assert set(values) == set(type(loaded).model_fields) - {"save_total_limit"}, section


def test_a_typo_in_train_params_leaves_the_checkpoints_of_a_long_run_alone(tmp_path, monkeypatch):
    checkpoint = tmp_path / "checkpoints/train/checkpoint-9000"
    checkpoint.mkdir(parents=True)
    (checkpoint.parent / "run.json").write_text('{"fingerprint": "abc"}')
    code, output = run_stage(
        "train", tmp_path, monkeypatch, lambda p: p["train"].update(per_device_train_batch_size="sixteen")
    )
    assert code == 1 and output.strip() == (
        "Error: params.yaml: train.per_device_train_batch_size: expected an integer, got 'sixteen'"
    )
    assert checkpoint.is_dir() and (checkpoint.parent / "run.json").read_text() == '{"fingerprint": "abc"}'


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda p: p["discover"].update(root="/no/such/corpus"),
            "Error: discover.root /no/such/corpus: no such file or folder",
        ),
        (lambda p: p["discover"].update(root="params.yaml"), "a file root must be a JSONL manifest"),
        (lambda p: p["discover"].update(layout="ksponspeech"), "discover.layout 'ksponspeech': choose one of"),
        (lambda p: p["text"].update(fillers="strip"), "text.fillers 'strip': choose one of keep, drop"),
        (lambda p: p["discover"].pop("root"), "discover.root must be set"),
    ],
)
def test_user_mistakes_in_discover_are_one_line(tmp_path, monkeypatch, edit, message):
    code, output = run_stage("discover", tmp_path, monkeypatch, edit)
    assert code == 1 and message in output and "Traceback" not in output and len(output.strip().splitlines()) == 1


def test_a_missing_model_base_is_one_line_in_every_stage_that_reads_it(tmp_path, monkeypatch):
    for name in ("preprocess", "train", "benchmark"):
        code, output = run_stage(name, tmp_path, monkeypatch, lambda p: p["model"].pop("base"))
        assert code == 1 and output.strip() == "Error: params.yaml: model.base must be set", name


# ---------------------------------------------------------------- 4, 5. leaks and ids


@pytest.fixture
def corpus_copy(sample_corpus, tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(sample_corpus, root)
    return root


def validation_pair(root):
    """A test utterance's audio and label paths."""
    wav = sorted((root / "2.Validation").rglob("*.wav"))[3]
    label = root / str(wav.relative_to(root)).replace("원천데이터", "라벨링데이터").replace("/VS_", "/VL_")
    return wav, label.with_suffix(".txt")


def train_pair(root, name):
    folder = "D01/J01/S999999"
    return (
        root / f"1.Training/원천데이터_230316/TS_D01/{folder}/{name}.wav",
        root / f"1.Training/라벨링데이터_230316/TL_D01/{folder}/{name}.txt",
    )


def test_test_audio_reached_through_a_symlink_or_a_copy_is_never_trained_on(corpus_copy):
    wav, label = validation_pair(corpus_copy)
    linked_wav, linked_label = train_pair(corpus_copy, "0001")
    copied_wav, copied_label = train_pair(corpus_copy, "0002")
    linked_wav.parent.mkdir(parents=True)
    linked_label.parent.mkdir(parents=True)
    linked_wav.symlink_to(wav)
    linked_label.symlink_to(label)
    shutil.copy(wav, copied_wav)
    shutil.copy(label, copied_label)
    splits, report = discover(Discover(root=str(corpus_copy), val_fraction=0.2, workers=1))
    assert report["skipped"]["same_audio_as_a_test_utterance"]["count"] == 2
    trained = {os.path.realpath(r["audio"]) for name in ("train", "val") for r in splits[name]}
    assert os.path.realpath(wav) not in trained and str(copied_wav) not in trained
    assert_counts_add_up(report)


def assert_counts_add_up(report: dict) -> None:
    """Every table of discover's report adds up to its total (the "kept, as found" tables counted
    rows the leak check dropped)."""
    assert report["found"] == report["kept_total"] + report["skipped_total"]
    assert sum(n for per in report["kept"].values() for n in per.values()) == report["kept_total"]
    assert sum(entry["count"] for entry in report["skipped"].values()) == report["skipped_total"]
    for name, table in report["kept_input"].items():
        assert sum(table.values()) == report["kept_total"], name


def test_a_symlink_loop_in_the_corpus_is_a_recorded_skip(corpus_copy):
    """Above a call's folder (found listing the units) and inside one (found by its walk)."""
    folder = next((corpus_copy / "1.Training").rglob("J01"))
    (folder / "loop").symlink_to(folder.parent, target_is_directory=True)
    call = next(p for p in sorted(folder.iterdir()) if p.is_dir() and p.name != "loop")
    (call / "back").symlink_to(folder.parent.parent, target_is_directory=True)
    splits, report = discover(Discover(root=str(corpus_copy), val_fraction=0.2, workers=1))
    loops = sorted([str(folder / "loop"), str(call / "back")])
    assert report["skipped"]["symlink_loop"] == {"count": 2, "examples": loops}
    assert splits["train"] and report["found"] == report["kept_total"] + report["skipped_total"]


def test_ids_and_sessions_are_unique_when_both_sides_number_sessions_alike(tmp_path):
    for side in ("1.Training", "2.Validation"):
        for n in (1, 2):
            aihub_utterance(tmp_path, side, f"D01/J01/S000001/000{n}", f"네 {side} {n}번입니다")
    aihub_utterance(tmp_path, "1.Training", "D01/J01/S000002/0001", "감사합니다")
    splits, _ = discover(Discover(root=str(tmp_path), val_fraction=0.4, seed=0, workers=1))
    rows = [r for rows in splits.values() for r in rows]
    assert len({r["id"] for r in rows}) == len(rows) == 5
    assert {r["session"] for r in splits["test"]} == {"test/D01/J01/S000001"}
    assert not {r["session"] for r in splits["test"]} & {r["session"] for r in splits["train"] + splits["val"]}


# ---------------------------------------------------------------- 9, 11. corpora found, empty, odd


def test_auto_finds_the_corpus_inside_the_folder_a_user_unzipped(corpus_copy, tmp_path):
    download = tmp_path / "download"
    shutil.move(corpus_copy, download / "007.저음질 전화망 음성인식 데이터" / "01.데이터")
    splits, report = discover(Discover(root=str(download), val_fraction=0.2, workers=1))
    assert report["layout"] == "aihub" and report["root"].endswith("007.저음질 전화망 음성인식 데이터/01.데이터")
    assert splits["train"] and splits["test"]


def test_a_corpus_that_yields_no_training_utterance_fails_saying_what_it_found(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("네", encoding="utf-8")
    with pytest.raises(
        DiscoverError,
        match=r"discover kept no training utterance: 1 utterances found under .* "
        r"\(plain layout\), 0 kept; skipped: label_without_audio 1",
    ):
        discover(Discover(root=str(tmp_path), workers=1))


def test_a_test_side_whose_every_utterance_is_skipped_fails(tmp_path):
    for n in range(1, 5):
        aihub_utterance(tmp_path, "1.Training", f"D01/J01/S00000{n}/0001", "네 알겠습니다")
    aihub_utterance(tmp_path, "2.Validation", "D01/J01/S000009/0001", "b/ n/")  # tags only: empty
    with pytest.raises(DiscoverError, match=r"the test split is empty: .* skipped: empty_label 1"):
        discover(Discover(root=str(tmp_path), val_fraction=0.25, workers=1))


def test_utf16_labels_silent_audio_and_labels_without_hangul_are_counted(tmp_path, tiny_model):
    aihub_utterance(tmp_path, "1.Training", "D01/J01/S000001/0001", "x")
    (tmp_path / "1.Training/라벨링데이터/D01/J01/S000001/0001.txt").write_bytes("네 알겠습니다".encode("utf-16"))
    aihub_utterance(tmp_path, "1.Training", "D01/J01/S000001/0002", "감사합니다", samples=np.zeros(8000))
    aihub_utterance(tmp_path, "1.Training", "D01/J01/S000001/0003", "OK thank you")
    splits, report = discover(Discover(root=str(tmp_path), val_fraction=0, workers=1), need_val=False)
    by_id = {r["id"].rsplit("/", 1)[1]: r for r in splits["train"]}
    assert by_id["0001"]["text"] == "네 알겠습니다" and report["kept_input"]["label_encoding"]["utf-16"] == 1
    assert report["kept_input"]["no_hangul"] == {"False": 2, "True": 1}
    for setting, kept in (("keep", 3), ("skip", 2)):
        out = preprocess_split(
            splits["train"],
            tmp_path / setting,
            Model(base=str(tiny_model)),
            Preprocess(workers=1, silent_audio=setting),
        )
        assert out["kept"] == kept
        flagged = out["kept_but_flagged"] if setting == "keep" else out["skipped"]
        assert flagged["silent_audio"] == {"count": 1, "examples": [by_id["0002"]["id"]]}


# ---------------------------------------------------------------- params as a user (and DVC) writes them


def params_text(tmp_path, old: str, new: str) -> Path:
    """params.yaml with one line's text replaced, as an editor or `dvc exp run -S` leaves it."""
    text = (REPO / "params.yaml").read_text()
    assert old in text
    (tmp_path / "params.yaml").write_text(text.replace(old, new, 1))
    return tmp_path / "params.yaml"


@pytest.mark.parametrize("written", ["3e-05", "3E-5", "3.0e-5", "+3e-05"])
def test_numbers_in_e_notation_are_numbers(tmp_path, written):
    """`dvc exp run -S train.learning_rate=3e-5` writes `3e-05`, which PyYAML reads as a string."""
    path = params_text(tmp_path, "learning_rate: 0.00005", f"learning_rate: {written}")
    (train,) = load(path, "train")
    assert train.learning_rate == 3e-5 and isinstance(train.learning_rate, float)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("  seed: 0                      # noise", "  seed: 0\n  seed: 1", "preprocess.seed is set twice (lines"),
        ("num_train_epochs: 4", "num_train_epochs: .inf", "train.num_train_epochs: expected a finite number, got inf"),
        ("learning_rate: 0.00005", "learning_rate: .nan", "train.learning_rate: expected a finite number, got nan"),
        (
            "category_pattern: 'D\\d\\d'",
            "category_pattern: 'D(\\d'",
            "discover.category_pattern 'D(\\\\d' is not a regular expression",
        ),
        (
            "export: models/finetuned-ct2",
            "export: models",
            "paths.model models/finetuned is inside paths.export models",
        ),
        ("checkpoints: checkpoints/train", "checkpoints: .", "is inside paths.checkpoints ., which a stage replaces"),
        ("curves: dvclive ", "curves: reports ", "paths.curves and paths.reports are both reports"),
        (
            "model: models/finetuned ",
            "model: models/whisper-base ",
            "paths.model models/whisper-base and model.base models/whisper-base overlap",
        ),
    ],
)
def test_params_a_user_can_get_wrong_are_one_line_errors(tmp_path, old, new, message):
    path = params_text(tmp_path, old, new)
    with pytest.raises(ParamsError) as failure:
        load(path, "paths", "discover", "model", "preprocess", "train")
    assert message in str(failure.value) and "\n" not in str(failure.value)


def test_an_unknown_scheduler_is_one_line_before_the_model_loads(tmp_path, monkeypatch):
    code, output = run_stage("train", tmp_path, monkeypatch, lambda p: p["train"].update(lr_scheduler_type="bogus"))
    assert code == 1 and output.startswith("Error: train.lr_scheduler_type 'bogus': choose one of transformers' linear")
    assert len(output.strip().splitlines()) == 1


def base_without(tiny_model, tmp_path, *names) -> Path:
    copy = tmp_path / "base"
    shutil.copytree(tiny_model, copy, ignore=shutil.ignore_patterns(*names))
    return copy


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tiny, tmp: tmp / "models" / "nowhere", "no such directory"),
        (
            lambda tiny, tmp: base_without(tiny, tmp, "tokenizer.json", "tokenizer_config.json"),
            "lacks tokenizer files (tokenizer.json, or vocab.json and merges.txt)",
        ),
        (lambda tiny, tmp: base_without(tiny, tmp, "model.safetensors"), "lacks weights (model.safetensors or"),
        (lambda tiny, tmp: lora_adapter(tmp), "is a LoRA adapter, not a model"),
    ],
)
@pytest.mark.parametrize("name", ["preprocess", "train"])
def test_a_base_model_that_cannot_be_trained_on_is_one_line_in_each_stage(
    tmp_path, monkeypatch, tiny_model, make, message, name
):
    """A base without tokenizer files trained with exit 0: transformers built a one-token
    tokenizer and validation reported 0.00% CER for a broken model."""
    base = make(tiny_model, tmp_path)
    code, output = run_stage(name, tmp_path, monkeypatch, lambda p: p["model"].update(base=str(base)))
    assert code == 1 and f"model.base {base}" in output and message in output, output
    assert len(output.strip().splitlines()) == 1 and not (tmp_path / "checkpoints").exists()


def lora_adapter(tmp_path) -> Path:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    return adapter


def test_a_corpus_without_val_stops_discover_not_train(tmp_path):
    """With val_fraction 0 discover and preprocess passed, then train said to run preprocess first."""
    for n in range(1, 5):
        aihub_utterance(tmp_path, "1.Training", f"D01/J01/S00000{n}/0001", "네 알겠습니다")
    with pytest.raises(
        DiscoverError, match=r"the val split is empty: the corpus has no val side and discover\.val_fraction is 0"
    ):
        discover(Discover(root=str(tmp_path), val_fraction=0, workers=1))


# ---------------------------------------------------------------- text and counts


def label_bytes(root, key, raw: bytes):
    """An AI Hub utterance whose label file holds exactly `raw`."""
    aihub_utterance(root, "1.Training", key, "x")
    (root / "1.Training/라벨링데이터" / f"{key}.txt").write_bytes(raw)


@pytest.mark.parametrize(
    ("codec", "text"),
    [("shift_jis", "ありがとうございます"), ("gbk", "你好，今天天气很好"), ("euc_jp", "こんにちは、今日はいい天気")],
)
def test_labels_in_other_codecs_or_with_control_characters_never_become_targets(tmp_path, codec, text):
    """A Shift-JIS label decoded as CP949 "Hangul" and was counted as Hangul; UTF-16 without a BOM
    and control characters (NUL, BEL) went into the targets."""
    label_bytes(tmp_path, "D01/J01/S000001/0001", text.encode(codec))
    label_bytes(tmp_path, "D01/J01/S000001/0002", "고객님 주소가 어떻게 되세요".encode("cp949"))
    label_bytes(tmp_path, "D01/J01/S000001/0003", "네 알겠습니다".encode("utf-16-le"))
    label_bytes(tmp_path, "D01/J01/S000001/0004", "네\x07 잠시만요".encode())
    label_bytes(tmp_path, "D01/J01/S000001/0005", "감사합니다\x00".encode())
    splits, report = discover(Discover(root=str(tmp_path), val_fraction=0, workers=1), need_val=False)
    texts = {r["id"].rsplit("/", 1)[1]: r["text"] for r in splits["train"]}
    assert texts == {"0002": "고객님 주소가 어떻게 되세요", "0003": "네 알겠습니다"}
    assert report["kept_input"]["label_encoding"] == {"cp949": 1, "utf-16-le": 1}
    assert report["skipped"]["label_encoding_suspect"]["examples"] == [
        str(next(tmp_path.rglob("라벨링데이터/**/0001.txt")))
    ]
    assert report["skipped"]["control_characters"]["count"] == 2
    assert not any(ch in t for t in texts.values() for ch in "\x00\x07")


@pytest.mark.parametrize("layout", ["aihub", "plain"])
def test_audio_files_sharing_a_stem_are_each_found_and_accounted_for(tmp_path, layout):
    """`x.wav` beside `x.flac` made `x.flac` neither found nor skipped."""
    if layout == "aihub":
        aihub_utterance(tmp_path, "1.Training", "D01/J01/S000001/0001", "네 알겠습니다")
        folder = tmp_path / "1.Training/원천데이터/D01/J01/S000001"
    else:
        folder = tmp_path / "calls"
        clip(folder / "0001.wav")
        (folder / "0001.txt").write_text("네 알겠습니다", encoding="utf-8")
    clip(folder / "0001.flac")
    splits, report = discover(Discover(root=str(tmp_path), val_fraction=0, workers=1), need_val=False)
    assert [r["audio"] for r in splits["train"]] == [str(folder / "0001.flac")]  # the first by name
    assert report["skipped"]["audio_same_stem"] == {"count": 1, "examples": [str(folder / "0001.wav")]}
    assert report["found"] == 2 == report["kept_total"] + report["skipped_total"]


def test_a_bad_jsonl_line_is_a_recorded_skip_naming_its_line(tmp_path):
    """A duplicated line, or one with an empty audio path, killed discover."""
    clip(tmp_path / "a.wav")
    clip(tmp_path / "b.wav")
    good = {"audio_filepath": "a.wav", "text": "네 알겠습니다", "duration": 1.0}
    lines = [good, good, {**good, "audio_filepath": ""}, {**good, "audio_filepath": "b.wav"}]
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
    splits, report = discover(Discover(root=str(manifest), val_fraction=0, workers=1), need_val=False)
    assert [r["audio"] for r in splits["train"]] == [str(tmp_path / "a.wav"), str(tmp_path / "b.wav")]
    assert report["skipped"] == {
        "manifest_line_duplicate": {"count": 1, "examples": [f"{manifest}:2"]},
        "manifest_line_invalid": {"count": 1, "examples": [f"{manifest}:3"]},
    }
