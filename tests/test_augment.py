"""The options against memorising, each shown to act: SpecAugment (training mode only, off in saved configs),
speed perturbation and noise (training copies only, content-addressed), checkpoint averaging
(the mean of the chosen checkpoints, kept only if no worse), and val held out by template."""

import json
import subprocess
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from safetensors.torch import load_file
from transformers import WhisperForConditionalGeneration

from conftest import QUICK_TRAIN, WHISPER_KO, run_stage, training_paths
from whisper_ko import audio, dims, manifest, shards, training
from whisper_ko.config import Discover, Model, ParamsError, Preprocess, SpecAugment, Train
from whisper_ko.discover import DiscoverError, discover
from whisper_ko.preprocess import preprocess_split, training_copies

QUICK = {
    **QUICK_TRAIN,
    "eval_steps": 1,
    "eval_max_samples": 4,
    "eval_max_new_tokens": 8,
    "early_stopping_patience": None,
    "warmup_ratio": 0.0,  # every step trains: no checkpoint equals the base
}


@pytest.fixture(scope="module")
def splits(sample_corpus):
    return discover(Discover(root=str(sample_corpus), val_fraction=0.2, seed=0, workers=1))[0]


@pytest.fixture(scope="module")
def features(splits, tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    for split, rows in (("train", splits["train"][:12]), ("val", splits["val"][:4])):
        preprocess_split(rows, root / split, Model(base=str(tiny_model)), Preprocess(shard_size=8, workers=1))
    return root


def finetune(features, tiny_model, tmp_path, **overrides) -> dict:
    config = Train(**{**QUICK, **overrides})
    return training.finetune(
        Model(base=str(tiny_model)), config, training_paths(features, tmp_path), log=lambda _: None
    )


# ---------------------------------------------------------------- SpecAugment


def encoder_input(model, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """What the encoder's first convolution receives in one forward pass."""
    seen = []
    hook = model.model.encoder.conv1.register_forward_pre_hook(lambda _, args: seen.append(args[0].clone()))
    try:
        model(input_features=features.clone(), labels=labels)
    finally:
        hook.remove()
    return seen[0]


def test_spec_augment_masks_the_log_mel_in_training_mode_only(tiny_model):
    model = WhisperForConditionalGeneration.from_pretrained(tiny_model)
    torch.manual_seed(0)
    features = torch.randn(2, model.config.num_mel_bins, 3000) + 3  # no frame is 0 by chance
    labels = torch.tensor([[model.config.decoder_start_token_id, model.config.eos_token_id]] * 2)
    training.set_spec_augment(model, SpecAugment(apply=True, mask_time_prob=0.2, mask_feature_prob=0.2))
    model.train()
    masked = encoder_input(model, features, labels)
    zero_frames = (masked == 0).all(dim=1).float().mean().item()
    zero_bins = (masked == 0).all(dim=2).float().mean().item()
    assert 0.1 < zero_frames < 0.35 and zero_bins > 0  # spans of time and of mel bins set to 0
    model.eval()
    assert torch.equal(encoder_input(model, features, labels), features)
    training.set_spec_augment(model, SpecAugment(apply=False))
    model.train()
    assert torch.equal(encoder_input(model, features, labels), features)


@pytest.mark.models
def test_spec_augment_trains_differently_and_every_saved_config_has_it_off(features, tiny_model, tmp_path):
    spec = {"apply": True, "mask_time_prob": 0.3, "mask_feature_prob": 0.2}
    finetune(features, tiny_model, tmp_path / "masked", spec_augment=spec, save_total_limit=None)
    finetune(features, tiny_model, tmp_path / "plain")
    configs = [
        tmp_path / "masked" / "out" / "config.json",
        *(tmp_path / "masked" / "ckpt").glob("checkpoint-*/config.json"),
    ]
    assert len(configs) == 5  # the model and its four checkpoints
    for path in configs:
        assert json.loads(path.read_text())["apply_spec_augment"] is False, path
    masked, plain = (load_file(str(tmp_path / run / "out" / "model.safetensors")) for run in ("masked", "plain"))
    assert any(not torch.equal(masked[k], plain[k]) for k in plain)  # the masks reached the training steps
    summary = json.loads((tmp_path / "masked" / "out" / "training_summary.json").read_text())
    assert summary["params"]["spec_augment"]["apply"] is True


# ---------------------------------------------------------------- speed perturbation and noise


def test_change_speed_is_kaldi_style_resampling():
    t = np.arange(16000) / dims.SAMPLE_RATE
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    for factor in (0.9, 1.1):
        faster = audio.change_speed(tone, factor)
        assert abs(len(faster) - 16000 / factor) <= 1
        peak = np.argmax(np.abs(np.fft.rfft(faster))) * dims.SAMPLE_RATE / len(faster)
        assert abs(peak - 440 * factor) < 2  # the pitch moves with the speed, as sox's `speed`


def test_mix_noise_reaches_the_asked_snr_and_leaves_silence_alone():
    rng = np.random.default_rng(0)
    speech = rng.normal(0, 0.1, 8000).astype(np.float32)
    noise = rng.normal(0, 0.3, 3000).astype(np.float32)  # shorter than the speech: looped
    mixed = audio.mix_noise(speech, noise, snr_db=7.5, offset=0.4)
    added = mixed - speech
    snr = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(added.astype(np.float64) ** 2))
    assert len(mixed) == len(speech) and abs(snr - 7.5) < 0.01
    silence = np.zeros(100, np.float32)
    assert audio.mix_noise(silence, noise, 10.0, 0.0) is silence


@pytest.fixture
def noise_dir(tmp_path):
    folder = tmp_path / "noise" / "free-sound"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("fan.wav", "street.flac"):
        sf.write(folder / name, rng.normal(0, 0.2, 8000).astype(np.float32), 8000)
    (folder / "README.txt").write_text("not audio")
    return tmp_path / "noise"


def test_noisy_copies_are_seeded_per_utterance(splits, noise_dir):
    rows = splits["train"][:20]
    config = Preprocess(**{"noise": {"root": str(noise_dir), "snr_db": [5, 15], "share": 0.5}})
    copies = {row["id"]: row for row in training_copies(rows, config)["noise"]}
    assert 0 < len(copies) < len(rows)
    assert all(
        5 <= c["augment"]["snr_db"] <= 15 and c["augment"]["noise"].endswith((".wav", ".flac")) for c in copies.values()
    )
    # another row coming or going changes no other row's copy
    fewer = {row["id"]: row for row in training_copies(rows[1:], config)["noise"]}
    assert fewer == {k: v for k, v in copies.items() if k != rows[0]["id"] + "#noise"}


def read_split(directory) -> dict[str, dict]:
    data = shards.open(directory)
    return {item["id"]: item for item in data}


@pytest.mark.models
def test_speed_copies_have_the_expected_durations_and_only_changed_shards_are_rewritten(splits, tiny_model, tmp_path):
    rows, model = splits["train"][:6], Model(base=str(tiny_model))
    out = tmp_path / "train"
    single = {"by": None}  # one utterance per window: copies and originals side by side (packed: test_packing)
    config = Preprocess(**{"speed_perturb": [0.9, 1.1], "shard_size": 4, "workers": 1, "pack": single})
    report = preprocess_split(rows, out, model, config, augment=True)
    items = read_split(out)
    assert report["copies"] == {"speed090": {"planned": 6, "kept": 6}, "speed110": {"planned": 6, "kept": 6}}
    assert report["manifest"] == 6 and report["kept"] == 18 == len(items)
    for row in rows:
        original = items[row["id"]]
        for factor in (0.9, 1.1):
            copy = items[f"{row['id']}#speed{factor:g}"]
            assert copy["duration"] == pytest.approx(original["duration"] / factor, abs=1e-3)
            assert copy["input_features"].shape[1] == pytest.approx(original["input_features"].shape[1] / factor, abs=2)
            assert copy["labels"] == original["labels"]
    originals = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")}
    # one factor dropped: its shards go, nothing else is recomputed
    report = preprocess_split(
        rows,
        out,
        model,
        Preprocess(**{"speed_perturb": [0.9], "shard_size": 4, "pack": single}),
        augment=True,
    )
    assert report["speed"]["processed_now"] == 0 and report["kept"] == 12
    assert not list(out.glob("speed110-*")) and {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*")} == originals


@pytest.mark.models
def test_the_stage_augments_train_only_and_counts_the_copies(splits, tiny_model, tmp_path, noise_dir):
    manifests = tmp_path / "data" / "manifests"
    manifest.write(manifests / "train.jsonl", splits["train"][:5])
    manifest.write(manifests / "val.jsonl", splits["val"][:3])
    params = {
        "model": {"base": str(tiny_model)},
        "preprocess": {
            "speed_perturb": [0.9, 1.1],
            "noise": {"root": str(noise_dir)},
            "workers": 1,
            "pack": {"by": None},
        },
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = run_stage("preprocess", tmp_path).stdout
    assert "train: 20 kept, 5 speed090 copies, 5 speed110 copies, 5 noise copies" in out
    train, val = (
        read_split(tmp_path / "data" / "features" / "train"),
        read_split(tmp_path / "data" / "features" / "val"),
    )
    assert Counter(i.split("#")[-1] for i in train if "#" in i) == {"speed0.9": 5, "speed1.1": 5, "noise": 5}
    assert set(val) == {row["id"] for row in splits["val"][:3]}  # val never augmented
    report = json.loads((tmp_path / "reports" / "preprocess.json").read_text())
    assert report["train"]["manifest"] == 5 and report["val"]["copies"] == {}


@pytest.mark.models
def test_bad_augmentation_params_fail_before_any_work(tiny_model, tmp_path):
    for speeds in ([1.0], [0.9, 0.9], [3.0]):
        with pytest.raises(ParamsError, match=r"preprocess\.speed_perturb"):
            Preprocess(**{"speed_perturb": speeds})
    with pytest.raises(ParamsError, match=r"preprocess\.noise\.snr_db"):
        Preprocess(**{"noise": {"snr_db": [20, 10]}})
    params = {"model": {"base": str(tiny_model)}, "preprocess": {"noise": {"root": str(tmp_path / "nowhere")}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run([WHISPER_KO, "preprocess"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1 and "preprocess.noise.root" in proc.stderr and "not a directory" in proc.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "reports").exists()


# ---------------------------------------------------------------- checkpoint averaging


def checkpoint_weights(tmp_path, step: int) -> dict:
    return load_file(str(tmp_path / "ckpt" / f"checkpoint-{step}" / "model.safetensors"))


def force_average_score(monkeypatch, value: float) -> None:
    """The averaged model's val score, whatever its transcripts: either side of the best checkpoint's."""
    evaluate = training.ShardTrainer.evaluate

    def scored(self, *args, **kwargs):
        metrics = evaluate(self, *args, **kwargs)
        if kwargs.get("metric_key_prefix") == "average":
            metrics["average_cer_nospace"] = value
        return metrics

    monkeypatch.setattr(training.ShardTrainer, "evaluate", scored)


@pytest.mark.models
@pytest.mark.parametrize("verdict", ["better", "worse"])
def test_the_saved_model_is_the_mean_of_the_best_checkpoints_only_if_no_worse(
    features, tiny_model, tmp_path, monkeypatch, verdict
):
    # the average is really written, loaded and scored; only its score is set either side of the best's
    force_average_score(monkeypatch, -1.0 if verdict == "better" else 99.0)
    summary = finetune(features, tiny_model, tmp_path, average_checkpoints=2, save_total_limit=1)
    record = summary["checkpoint_averaging"]
    scores = {
        e["step"]: e["eval_cer_nospace"]
        for e in json.loads((tmp_path / "ckpt" / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
        if "eval_cer_nospace" in e
    }
    best_two = sorted(scores, key=lambda s: (scores[s], s))[:2]
    assert record["steps"] == sorted(best_two) and record["best_val_cer_nospace"] == min(scores.values())
    # the two best and the latest stay on disk (save_total_limit yields to averaging); no average is left
    assert {p.name for p in (tmp_path / "ckpt").glob("checkpoint-*")} == {f"checkpoint-{s}" for s in {*best_two, 4}}
    saved = load_file(str(tmp_path / "out" / "model.safetensors"))
    if verdict == "better":
        assert record["saved"] == "average"
        chosen = [checkpoint_weights(tmp_path, s) for s in best_two]
        for key, value in saved.items():
            torch.testing.assert_close(value, torch.stack([c[key] for c in chosen]).mean(0), rtol=0, atol=1e-6)
        assert any(not torch.equal(saved[k], chosen[0][k]) for k in saved)
    else:
        assert record["saved"] == "best"
        best = checkpoint_weights(tmp_path, best_two[0])
        assert all(torch.equal(saved[k], best[k]) for k in saved)


@pytest.mark.models
def test_lora_averages_the_adapters_then_merges_them(features, tiny_model, tmp_path, monkeypatch):
    force_average_score(monkeypatch, -1.0)
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    record = finetune(features, tiny_model, tmp_path, method="lora", lora=lora, average_checkpoints=2)[
        "checkpoint_averaging"
    ]
    assert record["saved"] == "average" and len(record["steps"]) == 2
    adapters = [
        load_file(str(tmp_path / "ckpt" / f"checkpoint-{s}" / "adapter_model.safetensors")) for s in record["steps"]
    ]
    module = "model.decoder.layers.0.self_attn.q_proj"
    a, b = (
        torch.stack([w[f"base_model.model.{module}.lora_{name}.weight"] for w in adapters]).mean(0) for name in "AB"
    )
    base = load_file(str(tiny_model / "model.safetensors"))[f"{module}.weight"]
    saved = load_file(str(tmp_path / "out" / "model.safetensors"))[f"{module}.weight"]
    torch.testing.assert_close(saved, base + (8 / 4) * b @ a, rtol=0, atol=1e-6)


def test_average_checkpoints_must_be_two_or_more():
    with pytest.raises(ParamsError, match=r"train\.average_checkpoints must be at least 2, got 1"):
        Train(**{"average_checkpoints": 1})


# ---------------------------------------------------------------- val from unseen sentences


def test_val_held_out_by_template_shares_no_template_with_train(sample_corpus):
    splits, report = discover(Discover(root=str(sample_corpus), val_fraction=0.2, val_by="template", seed=0, workers=1))
    train, val = ({row["template"] for row in splits[s]} for s in ("train", "val"))
    assert val and not train & val
    assert len(splits["val"]) == pytest.approx(0.2 * (len(splits["train"]) + len(splits["val"])), rel=0.35)
    assert report["val_held_out_by"] == "template"
    # by session (the default), val's templates are mostly ones training says too
    by_session, _ = discover(Discover(root=str(sample_corpus), val_fraction=0.2, seed=0, workers=1))
    assert {row["template"] for row in by_session["val"]} & {row["template"] for row in by_session["train"]}


def test_val_by_a_field_the_manifest_lacks_is_one_clear_error(sample_corpus):
    with pytest.raises(DiscoverError, match=r"discover\.val_by 'speaker_name'.*no such field"):
        discover(Discover(root=str(sample_corpus), val_by="speaker_name", workers=1))
