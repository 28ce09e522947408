"""Bad input never becomes a wrong model or a lost run: each case a user or an adversary can make,
on a small corpus or file the test builds itself."""

import importlib.util
import itertools
import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from conftest import REPO, training_paths
from whisper_ko import evaluation, inference, shards
from whisper_ko.config import Discover, Model, ParamsError, Preprocess, Train, load, parse
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


def stage(name):
    spec = importlib.util.spec_from_file_location(f"{name}_stage", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    splits, report = discover(Discover(root=str(tmp_path), val_fraction=0, workers=1))
    assert report["skipped"]["audio_not_finite"]["count"] == 1 and len(splits["train"]) == 1
    # a manifest made elsewhere still cannot bring it in
    rows = [{**splits["train"][0], "id": "nan", "audio": str(next(tmp_path.rglob("0001.wav")))}, splits["train"][0]]
    out = preprocess_split(rows, tmp_path / "features", Model(str(tiny_model)), Preprocess(workers=1))
    assert out["kept"] == 1 and out["skipped"]["audio_not_finite"] == {"count": 1, "examples": ["nan"]}


@pytest.fixture
def nan_features(tmp_path, tiny_model):
    """Shards whose second training record holds NaN features (written past preprocess's checks)."""
    from whisper_ko import labels

    ids = labels.encode(labels.load_tokenizer(str(tiny_model)), ["네 알겠습니다"])[0]
    for split, poisoned in (("train", True), ("val", False)):
        writer = shards.ShardWriter(tmp_path / split / "shard-00000", 80)
        for i in range(4):
            feats = np.full((80, 100), np.nan if poisoned and i == 1 else -0.5, dtype=np.float32)
            writer.add(f"{split}-{i}", feats, ids, 1.0, "D01")
        writer.close()
    return tmp_path


def test_a_non_finite_loss_stops_training_naming_the_step_and_saves_nothing(nan_features, tiny_model, tmp_path):
    config = Train(max_steps=4, per_device_train_batch_size=1, eval_steps=2, eval_max_new_tokens=4, learning_rate=1e-3)
    paths = training_paths(nan_features, tmp_path)
    with pytest.raises(TrainingError, match=r"the training loss became nan at step \d: non-finite features"):
        finetune(Model(str(tiny_model)), config, paths, log=lambda _: None)
    assert not (tmp_path / "out").exists()


def test_a_model_with_non_finite_weights_is_refused_by_the_benchmark(tiny_model, tmp_path, sample_corpus):
    broken = tmp_path / "diverged"
    shutil.copytree(tiny_model, broken)
    weights = load_file(str(broken / "model.safetensors"))
    weights["model.decoder.layers.0.fc1.weight"][0, 0] = float("nan")
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    rows = discover(Discover(root=str(sample_corpus), workers=1))[0]["test"][:2]
    options = evaluation.Options(
        decoding=inference.Decoding(max_new_tokens=4), batch_size=2, cpu_workers=1, warmup_batches=0
    )
    with pytest.raises(evaluation.BenchmarkError) as failure:
        evaluation.transcribe({"diverged": str(broken)}, rows, options)
    message = str(failure.value)
    assert "model 'diverged', while loading it:" in message and "non-finite weights" in message
    assert "Traceback" not in message and len(message.splitlines()) == 1


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
    assert parse(Train, {}, "train") == Train()  # every train setting has its default in one place
    for section, values in document.items():
        loaded = load(REPO / "params.yaml", section)[0]
        assert set(values) == set(type(loaded).__dataclass_fields__) - {"save_total_limit"}, section


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
    assert report["found"] == report["kept_total"] + report["skipped_total"]


def test_a_symlink_loop_in_the_corpus_is_a_recorded_skip(corpus_copy):
    folder = next((corpus_copy / "1.Training").rglob("J01"))
    (folder / "loop").symlink_to(folder.parent, target_is_directory=True)
    splits, report = discover(Discover(root=str(corpus_copy), val_fraction=0.2, workers=1))
    assert report["skipped"]["symlink_loop"] == {"count": 1, "examples": [str(folder / "loop")]}
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
    splits, report = discover(Discover(root=str(tmp_path), val_fraction=0, workers=1))
    by_id = {r["id"].rsplit("/", 1)[1]: r for r in splits["train"]}
    assert by_id["0001"]["text"] == "네 알겠습니다" and report["kept_input"]["label_encoding"]["utf-16"] == 1
    assert report["kept_input"]["no_hangul"] == {"False": 2, "True": 1}
    for setting, kept in (("keep", 3), ("skip", 2)):
        out = preprocess_split(
            splits["train"], tmp_path / setting, Model(str(tiny_model)), Preprocess(workers=1, silent_audio=setting)
        )
        assert out["kept"] == kept
        flagged = out["kept_but_flagged"] if setting == "keep" else out["skipped"]
        assert flagged["silent_audio"] == {"count": 1, "examples": [by_id["0002"]["id"]]}
