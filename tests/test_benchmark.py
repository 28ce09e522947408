"""The benchmark on the sample corpus and the tiny model: order, failures, outputs, DVC wiring."""

import dataclasses
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import WHISPER_KO, make_project, run_stage, stage
from whisper_ko import (
    comparison,
    config,
    deploy,
    evaluation,
    inference,
    long_form,
    manifest,
    report,
    scheduling,
    scoring,
)
from whisper_ko.config import Paths

# The tests' quick decoding: 8 tokens, no loop guards, batches of 4 over two CPU workers, and no
# processor fallback unless a test gives one.
SETTINGS = config.Benchmark(
    max_new_tokens=8, batch_size=4, cpu_workers=2, batch_timeout_s=120, fallback=config.Fallback(apply=False)
)
OPTIONS = dataclasses.replace(scheduling.Options.of(SETTINGS, config.Model(base="none")), processor_fallback=None)


def scoring_with(resamples: int, seed: int = 0) -> scoring.Scoring:
    """By category (benchmark.group_by empty), no reading-equivalence CER."""
    return scoring.Scoring(("category",), kocer=False, resamples=resamples, seed=seed)


@pytest.fixture(scope="module")
def stage_module():
    """The benchmark stage imported in-process (for CliRunner and its output writer)."""
    return stage("benchmark")


def project(root: Path, rows: list[dict], tiny_model: Path, **overrides) -> Path:
    """A work directory with the test manifest and quick params, as DVC would run the stage in."""
    manifest.write(root / "data/manifests/test.jsonl", rows)
    base = root / "models" / "base"  # the same model as the base, scored as `base`: the fine-tune is compared with it
    if not base.is_dir():
        shutil.copytree(tiny_model, base)
    # the fine-tune the stage always scores, here the tiny model
    paths = {"model": str(tiny_model), "export": str(export(tiny_model, root))}
    benchmark = {
        "models": {"base": str(base)},
        "max_new_tokens": 8,
        "batch_size": 4,
        "bootstrap_resamples": 50,
        "long_form": {"max_new_tokens": 8},  # the tiny model loops: each fallback temperature decodes to the cap
    }
    return make_project(
        root, params={"paths": paths, "model": {"base": str(base)}, "benchmark": {**benchmark, **overrides}}
    )


def export(model: Path, root: Path) -> Path:
    """The tiny model for faster-whisper, as the export stage makes it (once per project folder)."""
    out = root / "models" / "ct2"
    if not out.is_dir():
        deploy.export(model, out, "int8")
    return out


def weights_only(model: Path, out: Path) -> Path:
    """A directory like a Trainer checkpoint: config and weights, no tokenizer or feature extractor."""
    out.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(model / name, out)
    return out


def test_plan_sorts_by_duration_and_deals_batches_round_robin():
    rows = [{"duration": d} for d in (1.0, 5.0, 3.0, 4.0, 2.0)]
    assert scheduling.plan(rows, batch_size=2, n_workers=2) == [[[1, 3], [0]], [[2, 4]]]
    # a batch of 5 would leave three workers idle: one utterance or two each, and no empty shard
    assert scheduling.plan(rows, batch_size=8, n_workers=4) == [[[1, 3]], [[2, 4]], [[0]]]


@pytest.mark.models
def test_results_come_back_in_manifest_order_from_several_workers(test_rows, tiny_model, tmp_path):
    rows = [dict(row) for row in test_rows[:12]]
    vanished = tmp_path / "gone.wav"
    shutil.copy(rows[3]["audio"], vanished)
    rows[3]["audio"] = str(vanished)
    vanished.unlink()  # since discover
    rows[5]["text"] = ""
    shards = scheduling.plan(rows, OPTIONS.batch_size, OPTIONS.cpu_workers)
    worked_on = [i for shard in shards for batch in shard for i in batch]
    assert len(shards) == 2 and worked_on != sorted(worked_on)  # the work is not in manifest order

    checkpoint = weights_only(tiny_model, tmp_path / "checkpoint-4")
    options = dataclasses.replace(OPTIONS, processor_fallback=str(tiny_model))
    results = evaluation.run({"a": str(tiny_model), "b": str(checkpoint)}, rows, options, scoring_with(20))
    alone = scheduling.transcribe({"a": str(tiny_model)}, rows, dataclasses.replace(OPTIONS, cpu_workers=1))

    for result in results.values():
        assert [p["id"] for p in result.predictions] == [r["id"] for r in rows]
        assert [p["hypothesis"] for p in result.predictions] == alone["a"].hypotheses
        # each worker scored its own utterances; scored again here, they give the same figures
        assert [c is None for c in result.transcripts.counts] == [i == 3 for i in range(len(rows))]
        unscored = dataclasses.replace(result.transcripts, counts=[])
        assert scoring.score(rows, unscored, scoring_with(20))[0] == result.metrics
        assert "gone.wav" in result.predictions[3]["error"]
        overall = result.metrics["overall"]
        assert (overall["n"], overall["failed"], overall["empty_references"]) == (10, 1, 1)
        assert sum(group["failed"] for group in result.metrics["by_category"].values()) == 1
        assert overall["cer_nospace_ci_low"] <= overall["cer_nospace"] <= overall["cer_nospace_ci_high"]
        # each worker decodes within its wall time, so two workers give at most twice one device's RTFx
        speed = result.speed
        assert speed["samples_per_s"] > 0 and 0 < speed["rtfx"] <= 2 * speed["rtfx_per_device"]
        assert not {"wall_s", "rtfx", "samples_per_s"} & set(overall)  # quality only: a rerun gives the same
        timings = result.transcripts.timings
        assert [t.device for t in timings] == ["cpu", "cpu"]  # one per worker
        assert sum(t.audio_s for t in timings) == pytest.approx(sum(r["duration"] for r in rows))
        assert (result.transcripts.dtype, result.transcripts.attention, result.transcripts.batch_size) == (
            "float32",
            "sdpa",
            4,
        )
    assert results["a"].metrics == results["b"].metrics


@pytest.mark.models
def test_a_worker_that_raises_fails_the_run_naming_model_and_batch(test_rows, tiny_model, tmp_path):
    outdated = tmp_path / "outdated"
    shutil.copytree(tiny_model, outdated)
    config = json.loads((outdated / "generation_config.json").read_text())
    del config["lang_to_id"]  # as in checkpoints saved before transformers knew languages
    (outdated / "generation_config.json").write_text(json.dumps(config))
    rows = test_rows[:6]
    first = scheduling.plan(rows, OPTIONS.batch_size, 1)[0][0]

    with pytest.raises(scheduling.BenchmarkError) as failure:
        scheduling.transcribe({"outdated": str(outdated)}, rows, dataclasses.replace(OPTIONS, cpu_workers=1))
    message = str(failure.value)
    assert "model 'outdated', batch 1/2" in message and rows[first[0]]["id"] in message
    assert "ValueError" in message and "generation config is outdated" in message


@pytest.mark.parametrize(
    ("sig", "expected"), [(signal.SIGKILL, "died with exit code -9"), (signal.SIGSTOP, "sent nothing for")]
)
@pytest.mark.models
def test_a_worker_that_dies_or_hangs_fails_the_run(test_rows, tiny_model, sig, expected):
    def strike():
        while not multiprocessing.active_children():
            time.sleep(0.05)
        os.kill(multiprocessing.active_children()[0].pid, sig)

    threading.Thread(target=strike, daemon=True).start()
    options = dataclasses.replace(OPTIONS, cpu_workers=1, batch_timeout_s=2)
    start = time.monotonic()
    with pytest.raises(scheduling.BenchmarkError, match=expected) as failure:
        scheduling.transcribe({"victim": str(tiny_model)}, test_rows[:4], options)
    assert "model 'victim'" in str(failure.value)
    assert time.monotonic() - start < 30 and not multiprocessing.active_children()


def test_bad_models_fail_before_any_worker_starts(test_rows, tiny_model, tmp_path):
    missing = r"model 'gone': '/no/such/model' is no directory here, nor a hub id"
    with pytest.raises(inference.ModelError, match=missing):
        scheduling.transcribe({"gone": "/no/such/model"}, test_rows[:2], OPTIONS)
    mixed = tmp_path / "mixed"
    shutil.copytree(tiny_model, mixed)
    processor = json.loads((mixed / "processor_config.json").read_text())
    processor["feature_extractor"]["feature_size"] = 128  # large-v3's preprocessor beside an 80-bin model
    (mixed / "processor_config.json").write_text(json.dumps(processor))
    with pytest.raises(inference.ModelError, match="expects 80 mel bins but its feature extractor makes 128"):
        scheduling.transcribe({"mixed": str(mixed)}, test_rows[:2], OPTIONS)
    with pytest.raises(inference.ModelError, match=r"'checkpoint': .* cannot be read: Can't load feature extractor"):
        scheduling.transcribe({"checkpoint": str(weights_only(tiny_model, tmp_path / "c"))}, test_rows[:2], OPTIONS)
    # A directory without weights, listed after a good model: found before the first one is decoded.
    no_weights = tmp_path / "no-weights"
    shutil.copytree(tiny_model, no_weights, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(inference.ModelError, match=r"model 'later': directory .*no-weights lacks weights"):
        scheduling.transcribe({"good": str(tiny_model), "later": str(no_weights)}, test_rows[:2], OPTIONS)
    assert not multiprocessing.active_children()


@pytest.mark.slow
def test_stage_writes_metrics_report_predictions_and_plot(test_rows, tiny_model, tmp_path):
    guards = {"apply": True, "compare": True}  # the demo's params leave the on/off table out
    root = project(tmp_path, test_rows, tiny_model, group_by=["speaker_type"], max_samples=10, fallback=guards)
    proc = run_stage("benchmark", root)
    assert "| Model | D01 | D02 | D03 | D04 | TOTAL |" in proc.stdout

    metrics = json.loads((root / "metrics/benchmark.json").read_text())
    assert set(metrics["base"]) == {"overall", "by_category", "by_speaker_type", "guards", "long_form"}
    assert all(isinstance(v, (int, float)) for v in _leaves(metrics["base"]))
    # the loop guards on and off, and the test sessions as whole calls, in dvc metrics diff's reach
    assert {"on", "off", "cer_nospace_change", "share_transcripts_changed"} <= set(metrics["base"]["guards"])
    assert set(metrics["finetuned-ct2"]["long_form"]) == {"sequential", "vad"}
    assert {"share_loops", "share_capped", "share_monotonic", "speech_covered"} <= set(
        metrics["base"]["long_form"]["sequential"]["overall"]
    )
    assert metrics["base"]["overall"]["n"] == 10
    predictions = manifest.read(root / "reports/predictions/base.jsonl")
    assert len(predictions) == 10 and {"id", "category", "reference", "hypothesis", "cer"} <= set(predictions[0])
    text = (root / "reports/benchmark.md").read_text()
    for heading in (
        "## By category",
        "## By speaker_type",
        "## Overall",
        "## base: 10 random",
        "## base: 10 worst",
        "## Whole calls: ",
        "## Loop guards on the test utterances: on and off",
        "## Korean scoring conventions",
    ):
        assert heading in text
    assert "| finetuned-ct2 · vad |" in text and "](figures/long_form_cer.png)" in text
    assert (root / "reports/figures/long_form_cer.png").read_bytes().startswith(b"\x89PNG")
    calls = manifest.read(root / "reports/predictions/base.long_form.sequential.jsonl")
    assert {"segments", "reference_spans", "capped", "monotonic"} <= set(calls[0])
    assert (root / "reports/predictions/base.without_guards.jsonl").is_file()
    plot = json.loads((root / "reports/benchmark_plot.json").read_text())
    assert {row["category"] for row in plot} == {"D01", "D02", "D03", "D04", "TOTAL"}
    # the answer: base and "finetuned" are the same model here, so the paired change is exactly zero
    assert metrics["finetuned"]["vs_base"] == {
        **{f"{rate}_change{end}": 0.0 for rate in ("cer", "cer_nospace") for end in ("", "_ci_low", "_ci_high")},
        "share_transcripts_changed": 0.0,
        "n": 10,
    }
    # the export, decoded by faster-whisper, against the model it was exported from
    assert set(metrics) == {"base", "finetuned", "finetuned-ct2"} and metrics["finetuned-ct2"]["vs_source"]["n"] == 10
    assert "finetuned-ct2, exported from finetuned and decoded by faster-whisper: no-space CER " in proc.stdout
    answer = proc.stdout.rstrip().splitlines()[-1]
    assert answer.startswith("Fine-tuning left no-space CER at ") and "on 10 test utterances" in answer, answer
    assert text.startswith("# Benchmark on the test split: 10 utterances") and "## Did fine-tuning help?" in text
    assert answer in text and "](figures/cer_by_category.png)" in text and "CER above 100%" in text
    assert (root / "reports/figures/cer_by_category.png").read_bytes().startswith(b"\x89PNG")
    # quality apart from speed: no timing in the metrics or the report, all of it in paths.speed
    timing = {"wall_s", "samples_per_s", "rtfx", "rtfx_per_device", "worker_peak_rss_mb"}
    assert not timing & {key for table in metrics.values() for group in table.values() for key in _keys(group)}
    assert "RTFx" not in text and "samples/s" not in text
    speed = json.loads((root / "metrics/speed/benchmark.json").read_text())
    assert {"base", "finetuned", "finetuned-ct2", "base · loop guards off", "finetuned-ct2 · vad (calls)"} <= set(speed)
    assert all(set(s) == timing for s in speed.values())
    assert "RTFx per device" in (root / "metrics/speed/benchmark.md").read_text()


def _keys(value):
    return [k for key, v in value.items() for k in (_keys(v) if isinstance(v, dict) else [key])]


def _leaves(value):
    return [x for v in value.values() for x in _leaves(v)] if isinstance(value, dict) else [value]


@pytest.mark.slow
def test_quick_evaluation_prints_a_summary_and_writes_nothing(test_rows, tiny_model, tmp_path):
    root = project(tmp_path, test_rows, tiny_model)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    proc = run_stage("benchmark", root, "--model", str(tiny_model), "--max-samples", "6")
    assert "samples 6 " in proc.stdout and "samples/s" in proc.stdout and "WER" in proc.stdout
    assert proc.stdout.count("REF: ") == 6
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_stage_errors_are_clear(test_rows, tiny_model, tmp_path, stage_module, monkeypatch):
    monkeypatch.chdir(project(tmp_path, [], tiny_model))
    out = CliRunner().invoke(stage_module.main, [])
    assert out.exit_code == 1 and "test.jsonl is empty" in out.output
    project(tmp_path, test_rows[:2], tiny_model)
    out = CliRunner().invoke(stage_module.main, ["--model", "models/typo"])
    assert out.exit_code == 1 and "'models/typo' is no directory here, nor a hub id" in out.output
    project(tmp_path, test_rows[:2], tiny_model, group_by=["dialect"])
    out = CliRunner().invoke(stage_module.main, [])
    assert out.exit_code == 1 and "no test utterance has ['dialect']" in out.output


@pytest.mark.models
def test_dvc_metrics_diff_shows_the_change_per_category(test_rows, tmp_path, stage_module, monkeypatch):
    """Two commits of outputs written by the stage's own writer, from fake hypotheses."""
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    monkeypatch.chdir(make_project(tmp_path, ["dvc.yaml"], commit="pipeline"))
    _dvc("init", "-q")
    calls = long_form.calls(test_rows, [0.3, 1.0], seed=0)
    settings = config.Benchmark()
    for drop in (0, 2):  # the second commit loses two characters of every D02 hypothesis, utterance and call
        hypotheses = [row["text"][drop:] if row["category"] == "D02" else row["text"] for row in test_rows]
        found = scheduling.Transcripts(hypotheses, {}, [scheduling.Timing("cpu", 10.0, 1.0, 1.0)])
        table, predictions, scored = scoring.score(test_rows, found, scoring_with(0))
        result = scoring.Result(table, predictions, found, scoring.speed(test_rows, found), scored)
        outputs = [
            long_form.output([(*call["spans"][0], call["text"][drop if call["category"] == "D02" else 0 :])], 0, None)
            for call in calls
        ]
        said = scheduling.Transcripts(outputs, {}, [scheduling.Timing("cpu", 10.0, 1.0, 1.0)])
        table, predictions, scored = scoring.score_calls(calls, said, scoring_with(0))
        sequential = scoring.Result(table, predictions, said, scoring.speed(calls, said), scored)
        run = evaluation.Run({"finetuned": result}, [], calls={"finetuned": {"sequential": sequential}})
        stage_module.write_outputs(run, Paths(), settings)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", f"drop {drop}"], check=True)

    diff = json.loads(_dvc("metrics", "diff", "HEAD~1", "HEAD", "--json"))["metrics/benchmark.json"]
    changed = {key for key, value in diff.items() if value["diff"]}
    assert "finetuned.by_category.D02.cer" in changed and "finetuned.overall.cer" in changed
    assert not any(".D01." in key or ".D03." in key for key in changed)
    assert diff["finetuned.by_category.D02.cer"]["old"] == 0.0 and diff["finetuned.by_category.D02.cer"]["new"] > 0
    assert "finetuned.long_form.sequential.by_category.D02.cer_nospace" in changed
    assert "finetuned.long_form.sequential.overall.cer" in changed
    assert not any("long_form" in key and ".D01." in key for key in changed)

    html = _dvc("plots", "show", "--json")
    assert "reports/benchmark_plot.json" in html and "D02 finetuned" in html


def _dvc(*args: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, f"dvc {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


class FakeClock:
    """Time that passes only when the fake decoder says so: timing checks without real timings."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_warm_up_batches_are_decoded_first_and_not_timed():
    clock, decoded, sent = FakeClock(), [], []

    def decode(batch):
        clock.now += 100.0 if not decoded else 1.0  # the first call pays for start-up and autotuning
        decoded.append(batch)
        return [f"hyp {batch}"]

    batches = ["longest", "b", "c"]
    decode_s, wall_s = scheduling.run_batches(
        batches, prepare=str.upper, decode=decode, send=lambda *message: sent.append(message), warmup=1, clock=clock
    )
    assert decoded == ["LONGEST", "LONGEST", "B", "C"]  # the warm-up batch is decoded again, timed
    assert (decode_s, wall_s) == (3.0, 3.0)
    assert sent == [(0, "LONGEST", ["hyp LONGEST"]), (1, "B", ["hyp B"]), (2, "C", ["hyp C"])]  # warm-up output dropped

    clock, decoded = FakeClock(), []
    decode_s, _ = scheduling.run_batches(batches, prepare=str.upper, decode=decode, send=lambda *m: None, clock=clock)
    assert decode_s == 102.0  # without warm-up the start-up is in the figure


def test_the_next_batch_is_read_while_the_current_one_decodes():
    started = {}

    def prepare(batch):
        started[batch] = threading.Event()
        started[batch].set()
        return batch

    def decode(batch):
        following = chr(ord(batch) + 1)
        if following <= "c":  # decoding waits until the next batch's reading has begun beside it
            deadline = time.monotonic() + 10
            while following not in started and time.monotonic() < deadline:
                time.sleep(0.01)
            assert following in started, f"batch {following} was not read while {batch} decoded"
        return [batch]

    sent = []
    scheduling.run_batches(["a", "b", "c"], prepare, decode, lambda i, prepared, hyps: sent.append(hyps))
    assert sent == [["a"], ["b"], ["c"]]


def scored(edits: list[int], chars: int = 4) -> list[dict]:
    return [{"nospace_edits": e, "nospace_chars": chars, "char_edits": e, "chars": chars} for e in edits]


def test_the_fine_tune_is_compared_with_its_base_on_the_same_utterances():
    """A paired bootstrap: each resample draws the same utterances for both models, so a model better
    on every utterance but one tie has an interval below zero (an unpaired one would straddle it)."""

    def result(edits: list[int], hypotheses: list[str]) -> scoring.Result:
        found = scheduling.Transcripts([*hypotheses, None], {8: "unreadable"})  # scored by neither: left out
        return scoring.Result({}, [], found, scored=[*scored(edits), {"error": "unreadable"}])

    results = {
        "zero-shot": result([4, 0, 2, 2, 3, 1, 4, 2], list("abcdefgh")),
        "finetuned": result([3, 0, 1, 1, 2, 0, 3, 1], list("xbxxxxxx")),
    }
    c = comparison.compare(results, "zero-shot", "finetuned", scoring_with(500, seed=1))
    ns = c.cer_nospace
    assert (c.n, ns.before, ns.after, ns.change, c.changed) == (8, 18 / 32, 11 / 32, round(-7 / 32, 6), 7 / 8)
    assert -7 / 32 - 0.2 < ns.ci_low <= ns.change <= ns.ci_high < 0
    sentence = report.answer(c)
    assert sentence.startswith("Fine-tuning lowered no-space CER from 56.25% (zero-shot) to 34.38% (finetuned)")
    assert "on 8 test utterances (-21.88 points, 95% interval" in sentence and "chance" not in sentence


def test_the_base_model_is_found_among_the_benchmarked_models_by_path(tmp_path):
    (tmp_path / "base").mkdir()
    models = {"finetuned": str(tmp_path / "base"), "other": "org/x", "zero-shot": f"{tmp_path}/./base"}
    assert comparison.baseline_alias(models, str(tmp_path / "base")) == "zero-shot"
    assert comparison.baseline_alias({"other": "org/x"}, str(tmp_path / "base")) is None


def read_only_mount(directory: Path) -> list[str]:
    """A command prefix that runs a command with `directory` a read-only file system: a private
    mount in a user namespace (root's chmod would not stop root)."""
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"needs user namespaces for a read-only mount (unshare -rm): {probe.stderr.decode().strip()}")
    directory.mkdir(parents=True, exist_ok=True)
    return ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o ro tmpfs "$0" && exec "$@"', str(directory)]


@pytest.mark.models
def test_a_read_only_metrics_path_fails_in_seconds_before_any_decoding(test_rows, tiny_model, tmp_path):
    """The benchmark decoded the whole test set, then died with an OSError traceback saving nothing."""
    root = project(tmp_path, test_rows, tiny_model)
    start = time.monotonic()
    proc = subprocess.run(
        [*read_only_mount(root / "metrics"), WHISPER_KO, "benchmark"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - start < 10
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == (
        f"Error: paths.metrics metrics/benchmark.json cannot be written (Read-only file system in {root / 'metrics'}): "
        "point paths.metrics at a writable location"
    )
    assert "benchmark:" not in proc.stderr and not (root / "reports").exists()  # no progress bar, nothing written
