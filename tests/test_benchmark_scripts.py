"""Smoke runs of benchmarks/: nothing else runs these scripts, so each one runs here as a
subprocess at the smallest size its options allow, on the session's sample corpus and tiny model,
and must exit 0 and print what its docstring promises (its table, its ratio line). The timings'
values are not checked: only that the script still runs end to end against today's package."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, make_project

pytestmark = [pytest.mark.slow, pytest.mark.models]

BENCHMARKS = REPO / "benchmarks"
# benchmarks/ modules that are no script of their own, and the scripts whose runs use them
LIBRARIES = {"recipes.py": ("augment.py", "packing.py")}


class Inputs:
    """What the scripts read, made on first use under `root`: the sample corpus, the tiny model, a
    manifest of the first test utterances, and params.yaml for the scripts that read params."""

    def __init__(self, root: Path, corpus: Path, model: Path, test_rows: list[dict]):
        self.root, self.corpus, self.model, self.test_rows = root, corpus, model, test_rows

    def manifest(self) -> Path:
        """The first 8 test utterances (two sessions, one a call longer than 30 s)."""
        from whisper_ko import manifest

        path = self.root / "manifests" / "test.jsonl"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            manifest.write(path, self.test_rows[:8])
        return path

    def params(self) -> Path:
        """The repository's params with the corpus, the tiny model, `manifest()` as the test split and
        quick decoding: short decodes, one worker, two temperatures for the loop guards, no bootstrap."""
        benchmark = yaml.safe_load((REPO / "params.yaml").read_text())["benchmark"]
        project = make_project(
            self.root / "project",
            params={
                "paths": {"manifests": str(self.manifest().parent)},
                "discover": {"root": str(self.corpus), "workers": 2},
                "model": {"base": str(self.model)},
                "preprocess": {"workers": 1},
                "benchmark": {
                    "max_new_tokens": 4,
                    "cpu_workers": 1,
                    "bootstrap_resamples": 0,
                    "long_form": {**benchmark["long_form"], "max_new_tokens": 8},
                    "fallback": {**benchmark["fallback"], "apply": False, "temperatures": [0.0, 0.5]},
                },
            },
        )
        return project / "params.yaml"


# script → (its options, given the inputs and a work folder; modules it needs; what its output must hold:
# strings, or re.Pattern; files it must write, relative to the work folder)
CASES = {
    "augment.py": (
        lambda i, w: ["--params", i.params(), "--work", w, "--only", "frozen encoder", "--max-steps", "1"],
        (),
        ["| recipe | unseen sentences: no-space CER", "| frozen encoder + averaging (saved: ", "vs frozen encoder"],
        ["augment.json", "augment.md"],
    ),
    "benchmark_throughput.py": (
        lambda i, w: [
            *("--manifest", i.manifest(), "--model", i.model, "--clips", "4", "--max-new-tokens", "4"),
            *("--workers", "1", "--batch-size", "4", "--naive-threads", "1", "--rss-max-new-tokens", "2"),
        ],
        (),
        [
            "| approach | samples/s (decoding) | RTFx | samples/s (end to end) |",
            re.compile(r"ratio ours / naive: [\d.]+× decoding"),
            re.compile(r"worker peak RSS: \d+ MB on 4 utterances, \d+ MB on 40"),
        ],
        [],
    ),
    "dataloader.py": (
        lambda i, w: ["--corpus", i.corpus, "--work", w, "--n-mels", "80", "--batch-size", "4", "--batches", "2"],
        ("datasets",),
        ["| loader | samples/s |", "| whisper_ko: shards + Collator (bf16) |", re.compile(r"ratio [\d.]+x \(target")],
        [],
    ),
    "deploy_speed.py": (
        lambda i, w: [
            *("--model", i.model, "--manifest", i.manifest(), "--quantization", "int8"),
            *("--workers", "1", "--batch-size", "8", "--max-new-tokens", "4"),
        ],
        ("faster_whisper", "ctranslate2"),
        ["8 clips", "| engine | samples/s | RTFx per device | × transformers |", "| faster-whisper int8 |"],
        [],
    ),
    "discover.py": (
        lambda i, w: ["--tree", w / "tree", "--utterances", "160", "--workers", "2"],
        (),
        [
            "340 files (160 utterances)",
            "| approach | what it checks | seconds | files/s |",
            re.compile(r"ratio whisper_ko / reference: [\d.]+x; kept 159, skipped 1"),
        ],
        [],
    ),
    "features.py": (
        lambda i, w: ["--corpus", i.corpus, "--clips", "4"],
        (),
        ["4 clips", "| approach | clips/s | MB per audio-hour |", re.compile(r"speed ratio [\d.]+x, size ratio")],
        [],
    ),
    "long_form.py": (
        lambda i, w: ["--params", i.params(), "--model", f"tiny={i.model}", "--out", w / "long_form.md"],
        (),
        ["## Loop guards on the test utterances: on and off", "| model | decoding s, guards off | on | on / off |"],
        ["long_form.md"],
    ),
    "packing.py": (
        lambda i, w: ["--params", i.params(), "--work", w, "--only", "packed + timestamps 0.5", "--max-steps", "1"],
        (),
        [
            "| packing | utterances per window | window filled (of 30 s) |",
            "| model | training TFLOPs: single clip | packed window | utterances/s, packed ÷ single |",
            "| recipe | training windows (utterances) × epochs |",
            re.compile(r"\| packed \+ timestamps 0\.5 \| \d+ \(\d+\) × [\d.]+ \| [\d.]+ \| – \|"),
            "packed val windows",
        ],
        ["packing.json", "packing.md"],
    ),
    "preprocess.py": (
        lambda i, w: [
            *("--corpus", i.corpus, "--clips", "4", "--workers", "1", "--mels", "80", "--model", i.model),
            *("--repeats", "1", "--check-clips", "2", "--workdir", w),
        ],
        ("datasets",),
        [
            "| approach | mels | wall s | clips/s (wall), per worker |",
            "| whisper_ko | 80 |",
            re.compile(r"80 mels: per-core throughput ratio .* on-disk ratio [\d.]+x"),
        ],
        [],
    ),
    "scale.py": (
        # no --reference: a git worktree of an old commit, added to this repository, and twice the time
        lambda i, w: [
            *("--sizes", "200", "--trees", w / "trees", "--workers", "2", "--model", i.model),
            *("--reference", ""),
        ],
        (),
        [
            "| clips | approach | step | wall s | CPU s |",
            "| 200 | whisper_ko | dvc status (cold state) |",
            "| 200 | whisper_ko | preprocess stage |",
            "| clips | step | wall, reference ÷ ours | peak PSS, reference ÷ ours |",
            "| step (whisper_ko) | wall s at 5M (extrapolated) |",
        ],
        [],
    ),
    "shard_formats.py": (
        lambda i, w: ["--corpus", i.corpus, "--clips", "8", "--reads", "8", "--model", i.model, "--workdir", w],
        ("datasets",),
        [
            "| format | MB per audio-hour | GB for 6,500 h | write s | reads/s |",
            re.compile(r"\| whisper_ko\.shards \(fp16 \+ zstd per record, mmap\) \| [\d.]+ \|.* \| 0\.0e\+00 \|"),
            "| HF Arrow, Array2D((None, n_mels), float16) |",
        ],
        [],
    ),
    "train_memory.py": (
        lambda i, w: ["--model", "tiny", "--batch", "2", "--label-tokens", "8"],
        (),
        ["| model | method | trainable M | B=2 | max batch |", "| tiny | full + ckpt |", "| tiny | lora |"],
        [],
    ),
}


def test_every_script_has_a_smoke_run():
    scripts = {path.name for path in BENCHMARKS.glob("*.py")}
    assert scripts == set(CASES) | set(LIBRARIES)
    assert all(set(users) <= set(CASES) for users in LIBRARIES.values())


@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_script(script, tmp_path, sample_corpus, tiny_model, test_rows):
    options, modules, expected, files = CASES[script]
    for module in modules:
        pytest.importorskip(module)
    inputs = Inputs(tmp_path / "inputs", sample_corpus, tiny_model, test_rows)
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "DVC_NO_ANALYTICS": "1",
        # one thread a process: on a busy 2-core machine, torch's idle threads spin for cores others hold
        "OMP_NUM_THREADS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # `whisper-ko`, as DVC runs it
    }
    command = [sys.executable, str(BENCHMARKS / script), *map(str, options(inputs, work))]
    proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout
    assert proc.returncode == 0, f"{' '.join(command)} failed:\n{output[-3000:]}\n{proc.stderr[-5000:]}"
    for want in expected:
        if isinstance(want, re.Pattern):
            assert want.search(output), f"{script}: no match for {want.pattern!r} in:\n{output}"
        else:
            assert want in output, f"{script}: {want!r} not in:\n{output}"
    for name in files:
        assert (work / name).is_file(), f"{script} did not write {name}"
