"""The four stages wired through DVC, run for real on the small sample corpus and the tiny model."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from transformers import WhisperForConditionalGeneration

from conftest import copy_project, dvc, dvc_env, git, stages_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory, reproduced_pipeline) -> Path:
    """A git + DVC checkout of the pipeline files with quick params, after one `dvc repro`."""
    return copy_project(reproduced_pipeline, tmp_path_factory.mktemp("project") / "p")


def test_the_log_reads_as_sentences(project):
    """One line per evaluation, no Python dicts, no warning that the caller cannot act on."""
    log = (project / "repro.log").read_text()
    evaluations = [line for line in log.splitlines() if ": validation no-space CER " in line]
    assert [line.split(" (epoch")[0] for line in evaluations] == ["step 2/4", "step 4/4"], log[-3000:]
    assert "{'eval_loss'" not in log and "{'loss'" not in log
    assert "Passing `generation_config` together" not in log
    assert "attention mask is not set" not in log and "seem to have been set" not in log
    assert "leaked semaphore" not in log  # benchmark workers exit on their own after their last result


def test_repro_writes_every_contract_output(project):
    for split in ("train", "val", "test"):
        rows = [json.loads(line) for line in (project / f"data/manifests/{split}.jsonl").read_text().splitlines()]
        assert rows and {"id", "audio", "sample_rate", "duration", "category", "raw_text", "text", "session"} <= set(
            rows[0]
        )
    # the demo's params pack training windows; val stays single utterances
    assert list((project / "data/features/train").glob("pack-*.idx.npz"))
    assert list((project / "data/features/val").glob("shard-*.idx.npz"))
    report = json.loads((project / "reports/preprocess.json").read_text())
    assert report["train"]["kept"] > 0 and report["val"]["kept"] > 0
    assert report["train"]["windows"]["utterances"] == report["train"]["kept"] and "windows" not in report["val"]

    model = WhisperForConditionalGeneration.from_pretrained(project / "models/finetuned")
    assert model.generation_config.language in ("ko", "<|ko|>") and model.generation_config.suppress_tokens
    summary = json.loads((project / "models/finetuned/training_summary.json").read_text())
    assert summary["global_steps"] == 4 and summary["precision"] == "bf16"

    metrics = json.loads((project / "metrics/benchmark.json").read_text())
    assert set(metrics) == {"base", "finetuned", "finetuned-ct2"}  # the export, decoded by faster-whisper
    for result in metrics.values():
        assert set(result["by_category"]) == {"D01", "D02", "D03", "D04"}
        assert {"cer", "cer_nospace", "wer", "n"} <= set(result["overall"])
        assert result["overall"]["n"] == sum(c["n"] for c in result["by_category"].values())
    table = (project / "reports/benchmark.md").read_text()
    assert "| Model | D01 | D02 | D03 | D04 | TOTAL |" in table
    predictions = (project / "reports/predictions/finetuned.jsonl").read_text().splitlines()
    assert len(predictions) == metrics["finetuned"]["overall"]["n"]


def test_second_repro_only_lists_the_corpus(project):
    out = dvc(project, "repro")
    assert "Running stage 'corpus'" in out and not stages_run(out), out
    assert json.loads(dvc(project, "status", "--json")) == {"corpus": ["always changed"]}


def test_the_corpus_is_tracked_by_its_listing_and_a_touched_label_reruns_discover(project, tmp_path):
    """discover depends on the listing (sizes and times), not on the corpus's bytes: DVC would hash
    every audio file. A touched label changes the listing; the manifests come out the same."""
    project = copy_project(project, tmp_path / "p")
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    deps = {dep["path"] for dep in lock["stages"]["discover"]["deps"]}
    assert "data/corpus.tsv" in deps and _params(project)["discover"]["root"] not in deps
    corpus = shutil.copytree(_params(project)["discover"]["root"], tmp_path / "corpus", symlinks=True)
    _set(project, "discover", root=str(corpus))
    assert "discover" in stages_run(dvc(project, "repro", "discover"))
    assert not stages_run(dvc(project, "repro", "discover"))
    manifests = {p.name: p.read_bytes() for p in (project / "data/manifests").iterdir()}
    label = next(corpus.rglob("*.txt"))
    os.utime(label, ns=(label.stat().st_atime_ns, label.stat().st_mtime_ns + 10**9))
    assert stages_run(dvc(project, "repro", "discover")) == {"discover"}
    assert {p.name: p.read_bytes() for p in (project / "data/manifests").iterdir()} == manifests


def test_features_stay_out_of_dvcs_cache_and_a_packing_param_rebuilds_only_the_training_shards(project, tmp_path):
    project = copy_project(project, tmp_path / "p")

    def shards():
        return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (project / "data/features").rglob("*.*")}

    def in_cache(path: Path) -> bool:
        md5 = hashlib.md5(path.read_bytes()).hexdigest()
        return (project / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).exists()

    before = shards()
    assert before and not any(map(in_cache, before))
    _set(project, "preprocess", pack={**_params(project)["preprocess"]["pack"], "gap_s": [0.2, 0.4]})
    assert "preprocess" in stages_run(dvc(project, "repro", "preprocess"))
    after = shards()
    val = {p for p in before if p.parent.name == "val"}
    assert val and all(after[p] == before[p] for p in val)  # untouched: same inode, same time
    train = {p for p in before if p.parent.name == "train"}
    assert train and all(after.get(p) != before[p] for p in train)  # every packed window rebuilt
    assert not any(map(in_cache, after))


def _params(project: Path) -> dict:
    return yaml.safe_load((project / "params.yaml").read_text())


def _set(project: Path, section: str, **values) -> None:
    params = _params(project)
    params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))


def test_changing_a_train_param_reruns_only_train_and_benchmark_and_torchrun_by_hand_first_trains_once(project):
    """The multi-node route of docs/training.md, the train stage under torchrun by hand and then `dvc repro`,
    trained twice: DVC reran the stage and it cleared the completed run's checkpoints."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["learning_rate"] = 0.0005
    (project / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    status = dvc(project, "status", "--json")
    # check: it reads every section, and passes; corpus: a listing, always run
    assert set(json.loads(status)) == {"check", "corpus", "train"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "1"]
    subprocess.run(
        [*torchrun, "-m", "whisper_ko.stages.train", "--params", "params.yaml"],
        cwd=project,
        env=dvc_env(),
        check=True,
        capture_output=True,
    )
    trained = (project / "models/finetuned/model.safetensors").read_bytes()
    out = dvc(project, "repro")
    ran = stages_run(out)
    assert ran == {"train", "benchmark"}, out
    assert "publishing it, not retraining" in out and "training in" not in out and "step 1/4" not in out
    assert (project / "models/finetuned/model.safetensors").read_bytes() == trained


def test_training_curves_render_as_dvc_plots(project):
    out = json.loads(dvc(project, "plots", "show", "--json", "--split"))
    assert not out.get("errors"), out["errors"]
    rendered = [name for name in out["data"] if name.startswith("dvclive/plots/metrics")]
    curve = next((n for n in rendered if n.endswith("eval/cer_nospace.tsv")), None)
    assert curve, list(out["data"])
    assert "cer_nospace" in json.dumps(out["data"][curve])


def test_an_experiment_is_recorded_beside_the_baseline(project):
    git(project, "add", "-A")
    git(project, "commit", "-qm", "baseline")  # dvc.lock and metrics in git, as the repository keeps them
    for key, value in (("user.name", "whisper-ko test"), ("user.email", "test@localhost")):
        git(project, "config", key, value)  # experiments are git commits: CI machines may have no identity
    out = dvc(project, "exp", "run", "-n", "lr-high", "-S", "train.learning_rate=0.02")
    ran = stages_run(out)
    assert ran == {"train", "benchmark"}, out

    assert "lr-high" in dvc(project, "exp", "list", "--name-only")
    params = json.loads(dvc(project, "params", "diff", "--json", "HEAD", "lr-high"))["params.yaml"]
    assert set(params) == {"train.learning_rate"} and params["train.learning_rate"]["new"] == 0.02
    # Only what the experiment changed: the fine-tune moves (its validation curve; four steps of the
    # tiny model may decode the same empty hypotheses either way), the base model's scores are
    # identical, and no timing is there to move (they are kept apart, in paths.speed).
    diff = json.loads(dvc(project, "metrics", "diff", "--json", "--all", "HEAD", "lr-high"))
    curves = diff["dvclive/metrics.json"]
    assert curves["eval.loss"]["new"] != curves["eval.loss"]["old"]
    scores = diff["metrics/benchmark.json"]
    assert {"finetuned.overall.cer", "finetuned.by_category.D01.cer", "base.overall.cer"} <= set(scores)
    moved = {key for key, change in scores.items() if change["new"] != change["old"]}
    assert not {key for key in moved if key.startswith("base.")}, sorted(moved)
