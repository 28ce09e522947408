"""Checks before the work: a stage may replace only directories it can show it made, its outputs
can be written and fit on the disk, and a model directory holds what loading it needs.

Every stage runs its checks before it reads any audio, loads any model, or writes or deletes
anything, so a mistake costs seconds, not a run or a user's folder. DVC removes a stage's outputs
before it reruns the stage, so the pipeline's first stage (`whisper-ko check`) runs the same checks
over every output before DVC can remove any.
"""

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from whisper_ko.config import CER_FIGURE, CURVES_FIGURE, LONG_FORM_FIGURE, Paths
from whisper_ko.errors import UserError

GB = 1e9
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# The tokenizer in its fast form, or its slow one's vocabulary and merges.
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))
FEATURE_EXTRACTOR_FILES = ("preprocessor_config.json", "processor_config.json")
CT2_WEIGHTS = "model.bin"  # a directory holding it is a CTranslate2 model
# What faster-whisper reads beside the weights: its config, the tokenizer, and the feature extractor
# (its mel count: without the file faster-whisper assumes 80, and a 128-mel large-v3 would decode noise).
CT2_FILES = ("config.json", "tokenizer.json", "preprocessor_config.json")


class OutputError(UserError):
    """An output location this run must not or cannot write."""


class ModelFilesError(UserError):
    """A model directory without what loading it needs."""


# ---------------------------------------------------------------- what a directory holds


def holds_only(directory: Path, allowed: Callable[[Path], bool]) -> bool:
    """Whether every file below `directory` (relative path given to `allowed`) is one a stage writes."""
    return all(allowed(p.relative_to(directory)) for p in directory.rglob("*") if not p.is_dir())


def has_marker(name: str) -> Callable[[Path], bool]:
    """A directory made by a stage that leaves `name` in it as its record."""
    return lambda directory: (directory / name).is_file()


def matching(pattern: str) -> Callable[[Path], bool]:
    """A directory holding only files whose relative paths match `pattern` (files a stage names so)."""
    compiled = re.compile(pattern)
    return lambda directory: holds_only(directory, lambda rel: bool(compiled.fullmatch(rel.as_posix())))


def require_ours(path: str | Path, param: str, made_here: Callable[[Path], bool], what: str) -> None:
    """A directory a stage will replace or clear is absent, empty, or shown by `made_here` to be the
    pipeline's own (`what` says what that looks like); otherwise one line naming the param."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir():
        raise OutputError(f"{param} {path} is a file, where this stage writes a directory: point {param} elsewhere")
    if next(path.iterdir(), None) is None or made_here(path):
        return
    raise OutputError(
        f"{param} {path} holds files this pipeline did not write ({what}); it replaces that folder, so it will not "
        f"touch it: point {param} at a new or empty folder, or move the files away"
    )


# ---------------------------------------------------------------- writing and space


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    return path


def require_writable(path: str | Path, param: str, directory: bool = True) -> None:
    """`path` (a directory, or a file if not `directory`) can be created or written: its nearest
    existing folder takes a new file. A file output that is a directory is refused too."""
    path = Path(path)
    if not directory and path.is_dir():
        raise OutputError(
            f"{param} {path} is a directory, where this stage writes a file: point {param} at a file path"
        )
    target = path if directory else path.parent
    where = _existing_ancestor(target)
    if not where.is_dir():
        raise OutputError(f"{param} {path}: {where} is a file, not a folder; point {param} elsewhere")
    try:
        handle, probe = tempfile.mkstemp(dir=where, prefix=".whisper-ko-probe-")
    except OSError as err:
        raise OutputError(
            f"{param} {path} cannot be written ({err.strerror} in {where}): point {param} at a writable location"
        ) from None
    os.close(handle)
    os.unlink(probe)
    if not directory and path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{param} {path} is read-only: make it writable or point {param} elsewhere")


def require_space(path: str | Path, needed: float, param: str, what: str) -> None:
    """The disk that will hold `path` has `needed` bytes free (an estimate of `what`)."""
    free = shutil.disk_usage(_existing_ancestor(Path(path))).free
    if free < needed:
        raise OutputError(
            f"{param} {path}: {what} need about {needed / GB:.1f} GB, and its disk has {free / GB:.1f} GB free: "
            "free some space or point it at a larger disk"
        )


def directory_size(path: str | Path) -> int:
    path = Path(path)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


# ---------------------------------------------------------------- model directories


def is_ctranslate2(path: str | Path) -> bool:
    return (Path(path) / CT2_WEIGHTS).is_file()


def ct2_missing(directory: str | Path) -> list[str]:
    """Of the files both the converter and faster-whisper read, those `directory` lacks."""
    return [name for name in CT2_FILES if not (Path(directory) / name).is_file()]


def require_model_files(model: str, param: str, tokenizer: bool = True) -> None:
    """A local Whisper directory holds its config, its weights and (if `tokenizer`) its tokenizer and
    feature extractor: without tokenizer files transformers builds a tokenizer of one token, trains
    on it, and the saved model is useless. A name that is no directory must be a hub id whose config
    can be fetched (or is cached); its files are checked by loading them."""
    path = Path(model)
    if not path.exists():
        _require_hub_model(model, param)
        return
    if not path.is_dir():
        raise ModelFilesError(f"{param} {model} is a file: give a Whisper model directory or a hub id")
    if is_ctranslate2(path):
        missing = ct2_missing(path)
        if missing:
            raise ModelFilesError(f"{param} {model} is a CTranslate2 model without {', '.join(missing)}")
        return
    if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        raise ModelFilesError(
            f"{param} {model} is a LoRA adapter, not a model: give the model it was trained from, or merge the "
            "adapter into it first (the train stage saves merged models)"
        )
    missing = [] if (path / "config.json").is_file() else ["config.json"]
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        missing.append(f"weights ({' or '.join(WEIGHT_FILES[::2])})")
    if tokenizer:
        if not any(all((path / name).is_file() for name in names) for names in TOKENIZER_FILES):
            missing.append("tokenizer files (tokenizer.json, or vocab.json and merges.txt)")
        if not any((path / name).is_file() for name in FEATURE_EXTRACTOR_FILES):
            missing.append(f"a feature extractor ({' or '.join(FEATURE_EXTRACTOR_FILES)})")
    if missing:
        raise ModelFilesError(
            f"{param} {model} lacks {', '.join(missing)}: copy the whole model directory (save_pretrained of the model "
            "and of its processor writes them)"
        )


def _require_hub_model(model: str, param: str) -> None:
    fix = "give a Whisper model directory or a hub id (make real-model builds the demo's models/whisper-base)"
    if model.startswith((".", "/", "~")) or model.count("/") > 1:  # a path, not an `org/name` hub id
        raise ModelFilesError(f"{param} {model}: no such directory: {fix}")
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(model, "config.json")
    except Exception as err:  # offline, unknown repository, gated, no network: all mean "not from here"
        offline = ", HF_HUB_OFFLINE is set" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise ModelFilesError(
            f"{param} {model}: no such directory here, and no hub model by that name is reachable "
            f"({type(err).__name__}{offline}): {fix}"
        ) from None


def parameter_bytes(model: str) -> int | None:
    """Bytes of the local model's parameters in fp32, from its safetensors headers (no weights read);
    None for a hub id or another weight format."""
    path = Path(model)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else []
    if not files:
        return None
    count = 0
    for file in files:
        with safe_open(file, "numpy") as weights:
            count += sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())  # noqa: SIM118
    return 4 * count


# ---------------------------------------------------------------- every stage's outputs

# What marks a directory as the pipeline's own, each written by the stage that makes it.
SUMMARY = "training_summary.json"  # in paths.model, by train
RUN_MARKER = "run.json"  # in paths.checkpoints, by train
EXPORT_RECORD = "whisper_ko_export.json"  # in paths.export, by export: what was exported, from where, how
# Files preprocess names so in paths.features/<split>: originals, speed and noise copies, partial writes.
SHARD_FILE = r"[a-z]+[0-9]*-[0-9]{5}(\.bin|\.idx\.npz)(\.partial)?"


def export_source(path: str) -> str | None:
    """The model a CTranslate2 export was made from (its export record), if `path` is one."""
    record = Path(path) / EXPORT_RECORD
    return json.loads(record.read_text())["source"] if record.is_file() else None


@dataclass(frozen=True)
class Output:
    param: str  # the params entry that names it, for messages
    path: Path
    directory: bool = False
    made_here: Callable[[Path], bool] | None = None  # for a directory the stage replaces or clears
    what: str = ""  # what `made_here` looks for, for messages


def stage_outputs(stage: str, paths: Paths) -> list[Output]:
    """What `stage` writes, each with what marks it as made here where the stage (or DVC, before
    rerunning it) replaces or clears a directory."""
    reports = Path(paths.reports)
    speed = Output("paths.speed", Path(paths.speed), directory=True)
    outputs = {
        "corpus": [Output("paths.listing", Path(paths.listing))],
        "discover": [
            Output(
                "paths.manifests",
                Path(paths.manifests),
                True,
                matching(r"(train|val|test)\.jsonl"),
                "only train.jsonl, val.jsonl and test.jsonl",
            ),
            Output("paths.reports", reports / "discover.json"),
            Output("paths.reports", reports / "discover.md"),
        ],
        "preprocess": [
            Output(
                "paths.features",
                Path(paths.features),
                True,
                matching(rf"(train|val)/{SHARD_FILE}"),
                "only train/ and val/ with feature shards",
            ),
            Output("paths.reports", reports / "preprocess.json"),
            speed,
        ],
        "train": [
            Output("paths.model", Path(paths.model), True, has_marker(SUMMARY), SUMMARY),
            Output("paths.checkpoints", Path(paths.checkpoints), True, has_marker(RUN_MARKER), RUN_MARKER),
            # DVCLive clears metrics.json, params.yaml, dvc.yaml, report.* and plots/ of its folder
            Output(
                "paths.curves",
                Path(paths.curves),
                True,
                matching(r"metrics\.json|plots/metrics/.+\.tsv"),
                "only DVCLive's metrics.json and plots/metrics",
            ),
            Output("paths.reports", reports / CURVES_FIGURE),
            speed,
        ],
        "export": [Output("paths.export", Path(paths.export), True, has_marker(EXPORT_RECORD), EXPORT_RECORD)],
        "benchmark": [
            Output("paths.metrics", Path(paths.metrics)),
            Output("paths.reports", reports / "benchmark.md"),
            Output("paths.reports", reports / "benchmark_plot.json"),
            Output("paths.reports", reports / CER_FIGURE),
            Output("paths.reports", reports / LONG_FORM_FIGURE),
            Output("paths.reports", reports / "predictions", True, matching(r"[^/]+\.jsonl"), "only <alias>*.jsonl"),
            speed,
        ],
    }
    return outputs[stage]


STAGES = ("corpus", "discover", "preprocess", "train", "export", "benchmark")


def require_outputs(outputs: list[Output]) -> None:
    """Each output is the pipeline's own or new, and can be written: one line naming the first that is not."""
    for output in outputs:
        if output.made_here:
            require_ours(output.path, output.param, output.made_here, output.what)
        require_writable(output.path, output.param, output.directory)


def require_pipeline(paths: Paths, corpus: str, base: str, models: dict[str, str]) -> None:
    """Every stage's outputs, the corpus root, the base model and the benchmark's models."""
    for stage in STAGES:
        require_outputs(stage_outputs(stage, paths))
    if not Path(corpus).exists():
        raise UserError(f"discover.root {corpus}: no such file or folder")
    require_model_files(base, "model.base")
    for alias, path in models.items():  # a checkpoint's processor may be model.base's, as in the benchmark
        require_model_files(path, f"benchmark.models.{alias}", tokenizer=False)
