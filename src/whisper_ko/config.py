"""params.yaml as typed, validated configuration: one frozen pydantic model per section.

Every setting is declared once, here: its type, default, range and meaning (docs/params.md is
generated from these declarations: `python tools/params_doc.py`). The stages read their sections
with `load` before anything is read, written or deleted, so a typo or a wrong type ends the run with
one line naming the parameter, never after hours of work or with a checkpoint directory cleared.
Library functions take these objects; building one in Python checks it the same way.
"""

import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from whisper_ko.dims import CHUNK_LENGTH, MAX_TARGET_POSITIONS
from whisper_ko.errors import UserError

Precision = Literal["auto", "bf16", "fp16", "fp32"]
Attention = Literal["sdpa", "auto", "flash_attention_2", "eager"]


class ParamsError(UserError):
    """A params file that cannot be used as written."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader reading numbers as YAML 1.2 does, so `3e-05` and `1E-4` are floats, as
    `dvc exp run -S train.learning_rate=3e-5` writes them (PyYAML's YAML 1.1 reads them as strings)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."),
)


def _check_duplicates(node: yaml.Node, where: str = "") -> None:
    """A key set twice in one mapping is an error: YAML loaders silently keep the last value. So is a
    key that YAML reads as something other than text (`1:`, `true:`, `null:`): no name is one."""
    if not isinstance(node, yaml.MappingNode):
        return
    seen = {}
    for key, value in node.value:
        name = f"{where}.{key.value}" if where else str(key.value)
        if key.tag != "tag:yaml.org,2002:str":
            kind = key.tag.rsplit(":", 1)[-1]
            raise ParamsError(f"{name}: YAML reads the key {key.value} as {kind}, not text: quote it")
        if key.value in seen:
            raise ParamsError(
                f"{name} is set twice (lines {seen[key.value] + 1} and {key.start_mark.line + 1}): keep one"
            )
        seen[key.value] = key.start_mark.line
        _check_duplicates(value, name)


def _invalid(message: str) -> PydanticCustomError:
    """A validator's error: `message` names the parameter and the fix, and is shown as it is."""
    return PydanticCustomError("params", "{message}", {"message": message})


class Settings(BaseModel):
    """A section of params.yaml, or a group of settings within one: frozen, no unknown key, no value
    converted from another type (a whole number is taken where a number is expected, nothing else),
    no infinity or NaN. Invalid values raise ParamsError, one line naming each parameter in full."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)
    where: ClassVar[str]  # the dotted name in params.yaml: `train`, `train.lora`

    def __init__(self, /, **values: Any) -> None:
        # Also runs for a group validated inside its section, so a nested error raises from here
        # with its own dotted name.
        try:
            super().__init__(**values)
        except ValidationError as err:
            raise ParamsError(_message(type(self), err)) from None


# ---------------------------------------------------------------- error messages


def _message(cls: type[Settings], err: ValidationError) -> str:
    """pydantic's errors about `cls` as one line: each names its parameter and what to set."""
    found, unknown, missing = [], [], []
    for error in err.errors(include_url=False):
        loc = error["loc"]
        if error["type"] == "extra_forbidden" and len(loc) == 1:
            unknown.append(f"{cls.where}.{loc[0]}")
        elif error["type"] == "missing" and len(loc) == 1:
            missing.append(f"{cls.where}.{loc[0]}")
        else:
            found.append(_describe(cls, error))
    if unknown:
        found.insert(0, f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(cls.model_fields))}")
    if missing:
        found.append(f"{', '.join(missing)} must be set")
    return "; ".join(dict.fromkeys(found))


_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "list": "a list",
    "dict": "a mapping",
    "model": "a group of settings",
}


def _describe(cls: type[Settings], error: dict) -> str:
    kind, loc, value = error["type"], error["loc"], error.get("input")
    if kind == "params":
        return error["ctx"]["message"]
    name = cls.where + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    info = cls.model_fields.get(loc[0]) if len(loc) == 1 else None
    nullable = info is not None and type(None) in get_args(info.annotation)
    if kind == "finite_number":
        return f"{name}: expected a finite number, got {value!r}"
    if kind == "literal_error":
        choices = _choices(info.annotation) if info else re.findall(r"'([^']*)'", error["ctx"]["expected"])
        return f"{name} {value!r}: choose one of {', '.join(choices)}{', or null' if nullable else ''}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{name} must be {_bounds(info, error['ctx'])}, got {value!r}"
    if kind in ("string_too_short", "too_short", "too_long"):
        return f"{name} must {_length(info, error['ctx'])}, got {value!r}"
    what = kind.split("_")[0]
    if what in _EXPECTED and kind.endswith(("_type", "_parsing")):
        return f"{name}: expected {_EXPECTED[what]}{' or null' if nullable else ''}, got {value!r}"
    return f"{name}: {error['msg']}, got {value!r}"


def _choices(annotation) -> list[str]:
    if get_origin(annotation) is Literal:
        return [str(choice) for choice in get_args(annotation)]
    return [choice for arg in get_args(annotation) for choice in _choices(arg)]


def _number(value) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


_LIMITS = {
    annotated_types.Ge: "ge",
    annotated_types.Gt: "gt",
    annotated_types.Le: "le",
    annotated_types.Lt: "lt",
    annotated_types.MinLen: "min_length",
    annotated_types.MaxLen: "max_length",
}


def _limits(info) -> dict:
    """A parameter's constraints by their Field names (ge, gt, le, lt, min_length, max_length)."""
    return {
        _LIMITS[type(m)]: getattr(m, _LIMITS[type(m)]) for m in (info.metadata if info else ()) if type(m) in _LIMITS
    }


def _bounds(info, ctx: dict) -> str:
    """`in [0, 1)`, or the one bound broken where the parameter has one (or is a list's item)."""
    limits = _limits(info)
    low = next(((k, limits[k]) for k in ("ge", "gt") if k in limits), None)
    high = next(((k, limits[k]) for k in ("le", "lt") if k in limits), None)
    if low and high:
        return (
            f"in {'[' if low[0] == 'ge' else '('}{_number(low[1])}, {_number(high[1])}{']' if high[0] == 'le' else ')'}"
        )
    key, limit = next(iter(ctx.items()))
    words = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
    return f"{words[key]} {_number(limit)}"


def _length(info, ctx: dict) -> str:
    limits = {**ctx, **_limits(info)}
    low, high = limits.get("min_length"), limits.get("max_length")
    if low == 1 and high is None:
        return "not be empty"
    if low is not None and low == high:
        return f"hold exactly {low} items"
    return f"hold at least {low} items" if low is not None else f"hold at most {high} items"


# ---------------------------------------------------------------- sections


class Paths(Settings):
    """Where the stages read and write, relative to the repository. dvc.yaml interpolates these
    same values (`${paths.features}`), so a path changed here moves for DVC and the stages at once."""

    where = "paths"
    listing: str = Field(
        "data/corpus.tsv",
        min_length=1,
        description="discover.root's files with sizes and times: what DVC checks (discover's dependency) instead of "
        "hashing the corpus.",
    )
    manifests: str = Field("data/manifests", min_length=1, description="The splits' manifests (JSONL), discover's.")
    features: str = Field("data/features", min_length=1, description="The feature shards, preprocess's.")
    model: str = Field(
        "models/finetuned", min_length=1, description="The fine-tune; the benchmark scores it as `finetuned`."
    )
    checkpoints: str = Field(
        "checkpoints/train",
        min_length=1,
        description="Training checkpoints, kept between runs: a rerun with the same params resumes.",
    )
    curves: str = Field("dvclive", min_length=1, description="Training curves and their last values.")
    metrics: str = Field(
        "metrics/benchmark.json",
        min_length=1,
        description="Benchmark quality, in git: `dvc metrics diff` between commits.",
    )
    reports: str = Field("reports", min_length=1, description="Reports, figures and predictions of the stages.")
    speed: str = Field(
        "metrics/speed",
        min_length=1,
        description="Timings of train and benchmark (<stage>.json, <stage>.md): they vary from run to run, so "
        "they are neither in git nor DVC outputs, and a rerun on the same inputs leaves the tree clean.",
    )
    export: str = Field(
        "models/finetuned-ct2",
        min_length=1,
        description="The fine-tune for faster-whisper; the benchmark scores it as `finetuned-ct2`.",
    )

    @model_validator(mode="after")
    def _apart(self) -> Self:
        where = {name: os.path.abspath(value) for name, value in self}
        for name, path in where.items():
            for other, inner in where.items():
                if other == name:
                    continue
                if path == inner:
                    raise _invalid(f"paths.{name} and paths.{other} are both {getattr(self, name)}: give each its own")
                if name in REPLACED and _inside(inner, path):
                    raise _invalid(
                        f"paths.{other} {getattr(self, other)} is inside paths.{name} {getattr(self, name)}, which a "
                        "stage replaces or clears: move one of them out of the other"
                    )
        return self

    def check_apart_from(self, base: str) -> None:
        """paths.model must not be, hold or lie inside the base model's directory: saving would replace it."""
        model, base_dir = os.path.realpath(self.model), os.path.realpath(base)
        if model == base_dir or _inside(model, base_dir) or _inside(base_dir, model):
            raise ParamsError(
                f"paths.model {self.model} and model.base {base} overlap: saving the fine-tune would overwrite the "
                "base; give paths.model a location of its own"
            )


# Directories a stage replaces or clears as a whole (DVC removes its outputs before rerunning a stage too):
# no other path may lie inside one of them.
REPLACED = ("manifests", "features", "model", "checkpoints", "curves", "export")


def _inside(path: str, directory: str) -> bool:
    return path.startswith(directory.rstrip(os.sep) + os.sep)


FINETUNED = "finetuned"  # the benchmark's alias of the pipeline's own fine-tune (paths.model)
EXPORTED = "finetuned-ct2"  # and of its CTranslate2 export (paths.export)
# Figures under paths.reports (dvc.yaml names them too), linked from benchmark.md by these relative paths.
CER_FIGURE = "figures/cer_by_category.png"  # drawn by the benchmark
LONG_FORM_FIGURE = "figures/long_form_cer.png"  # the benchmark's whole calls
CURVES_FIGURE = "figures/training_curves.png"  # drawn by train


class Discover(Settings):
    """The corpus, and how discover splits it into train, val and test manifests."""

    where = "discover"
    root: str = Field(min_length=1, description="The corpus root (or a JSONL manifest).")
    layout: Literal["auto", "aihub", "kspon", "plain", "jsonl"] = Field(
        "auto", description="How the corpus is laid out; auto: recognised from its files."
    )
    category_pattern: str | None = Field(
        r"D\d\d", description="Regular expression of the path component that names the category (null: none)."
    )
    max_duration: float = Field(
        float(CHUNK_LENGTH), gt=0, le=CHUNK_LENGTH, description="Seconds; longer clips do not fit Whisper's window."
    )
    val_fraction: float = Field(0.1, ge=0, lt=1, description="Share of training sessions held out for early stopping.")
    val_max: int | None = Field(2000, ge=1, description="Cap on val utterances (null: none).")
    val_by: str = Field(
        "session",
        min_length=1,
        description="What val holds out whole, so that no val group is also trained on: `session` (speakers and "
        "calls), or any manifest field, e.g. `template` in the sample corpus (sentences whose frame training "
        "never hears: early stopping and checkpoint choice then reward listening).",
    )
    test_fraction: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of sessions held out as test, only for corpora without an evaluation side.",
    )
    max_per_category: int | None = Field(
        None, ge=1, description="Utterances per category and split, for quick subsets."
    )
    seed: int = Field(0, description="The splits' and subsets' random choices.")
    workers: int | None = Field(None, ge=1, description="Worker processes (null: the CPU count).")
    engine: Literal["local", "dask"] = Field(
        "local",
        description="Where the workers run: `local`, processes on this host; `dask`, a Dask cluster's workers "
        "(pip install 'whisper-ko[cluster]'). Each worker reads the corpus at discover.root's path and needs "
        "whisper-ko installed.",
    )
    scheduler: str | None = Field(
        None,
        description="The Dask scheduler's address, e.g. tcp://10.0.0.1:8786 (null: a local cluster of `workers` "
        "processes); engine dask only.",
    )

    @field_validator("category_pattern")
    @classmethod
    def _regular_expression(cls, pattern: str | None) -> str | None:
        try:
            re.compile(pattern or "")
        except re.error as err:
            raise _invalid(
                f"discover.category_pattern {pattern!r} is not a regular expression ({err}); "
                r"e.g. 'D\d\d', or null for no categories"
            ) from None
        return pattern

    @model_validator(mode="after")
    def _engine(self) -> Self:
        if self.scheduler is not None and self.engine != "dask":
            raise _invalid(
                "discover.scheduler is set but discover.engine is local: set engine: dask, or scheduler: null"
            )
        return self


class Text(Settings):
    """How transcripts become training and reference text."""

    where = "text"
    side: Literal["spelling", "pronunciation"] = Field(
        "spelling", description="Which side of (A)/(B) dual transcriptions."
    )
    fillers: Literal["keep", "drop"] = Field("keep", description="Filler marks: 어/ → 어 (keep), or removed (drop).")
    masked: Literal["drop", "remove"] = Field(
        "drop", description="Utterances with ((…)) spans: skipped (drop), or the span removed (remove)."
    )


class Model(Settings):
    """The Whisper to fine-tune, and what it is asked to do."""

    where = "model"
    base: str = Field(min_length=1, description="Hub id (openai/whisper-large-v3-turbo) or a local Whisper directory.")
    language: str = Field("ko", description="Whisper's language code for training and decoding.")
    task: Literal["transcribe", "translate"] = Field("transcribe", description="Whisper's task token.")
    attention: Attention = Field(
        "sdpa",
        description="Attention implementation (runtime.attention_candidates); auto: flash-attention-2 where it "
        "loads (bf16/fp16 on CUDA), else sdpa.",
    )


class Noise(Settings):
    """Noisy extra copies of training utterances (MUSAN-style): a seeded recording from `root`,
    mixed in at a seeded signal-to-noise ratio."""

    where = "preprocess.noise"
    root: str | None = Field(
        None,
        description="Folder of noise recordings (wav, flac, ogg, mp3; searched recursively); null: no noisy copies.",
    )
    snr_db: list[float] = Field(
        [10.0, 20.0],
        min_length=2,
        max_length=2,
        description="[low, high] signal-to-noise ratio in dB: uniform in between.",
    )
    share: float = Field(1.0, gt=0, le=1, description="Share of training utterances given a noisy copy.")

    @model_validator(mode="after")
    def _rising(self) -> Self:
        if self.snr_db[0] > self.snr_db[1]:
            raise _invalid(f"preprocess.noise.snr_db must be [low, high] in dB, got {self.snr_db}")
        return self


SPEED_RANGE = (0.5, 2.0)  # beyond, a copy no longer sounds like speech at another pace


class Pack(Settings):
    """Training windows that hold several consecutive utterances, as Whisper was pre-trained: the
    encoder's 30 s then carry speech instead of padding (docs/packing.md)."""

    where = "preprocess.pack"
    by: Literal["session", "category"] | None = Field(
        "category",
        description="category: seeded groups within a category; session: a call's utterances in their order; "
        "null: one utterance per window.",
    )
    max_s: float = Field(
        float(CHUNK_LENGTH), ge=1, le=CHUNK_LENGTH, description="Seconds of audio per window, gaps included."
    )
    gap_s: list[Annotated[float, Field(ge=0)]] = Field(
        [0.1, 0.6],
        min_length=2,
        max_length=2,
        description="Silence between utterances, seconds: uniform in [low, high] (high at most max_s / 2), seeded "
        "per window.",
    )
    timestamps: float = Field(
        0.5, ge=0, le=1, description="Share of windows labelled with segment timestamps (the others: <|notimestamps|>)."
    )
    single: float = Field(
        0.0, ge=0, le=1, description="Share of utterances also kept as a window of their own (short-form training)."
    )

    @model_validator(mode="after")
    def _gaps(self) -> Self:
        low, high = self.gap_s
        if not low <= high <= self.max_s / 2:
            raise _invalid(
                "preprocess.pack.gap_s must be [low, high] seconds with 0 <= low <= high <= max_s / 2, "
                f"got {self.gap_s}"
            )
        return self


class Preprocess(Settings):
    """Features and labels of the manifests' utterances, in shards, and the training copies."""

    where = "preprocess"
    dtype: Literal["float16", "float32"] = Field("float16", description="Stored feature precision.")
    max_label_tokens: int = Field(
        MAX_TARGET_POSITIONS,
        ge=5,
        le=MAX_TARGET_POSITIONS,
        description="Longest label in tokens, the 4-token prefix included (Whisper's decoder); longer ones are "
        "skipped.",
    )
    min_duration: float = Field(0.1, ge=0, description="Seconds; shorter clips are skipped.")
    shard_size: int = Field(1000, ge=1, description="Records per shard (an utterance, or a packed window).")
    workers: int | None = Field(None, ge=1, description="Worker processes (null: the CPU count).")
    silent_audio: Literal["keep", "skip"] = Field(
        "keep", description="Clips of digital silence whose label has text (counted in the report either way)."
    )
    speed_perturb: list[Annotated[float, Field(ge=SPEED_RANGE[0], le=SPEED_RANGE[1])]] = Field(
        [],
        description="Kaldi-style speed perturbation: per factor, an extra copy of every training utterance "
        "resampled to that speed (pitch moves with it), e.g. [0.9, 1.1]. Never val or test.",
    )
    noise: Noise = Field(default_factory=Noise, description="Noisy training copies; off without noise.root.")
    pack: Pack = Field(default_factory=Pack, description="Training windows of several utterances; off without pack.by.")
    seed: int = Field(
        0, description="The noise recordings, offsets and SNRs per utterance; the packing's groups, gaps and shares."
    )

    @field_validator("speed_perturb")
    @classmethod
    def _distinct(cls, factors: list[float]) -> list[float]:
        if 1 in factors or len(set(factors)) != len(factors):
            low, high = SPEED_RANGE
            raise _invalid(
                f"preprocess.speed_perturb {factors}: distinct factors in [{low}, {high}], "
                "not 1 (the original is always kept), e.g. [0.9, 1.1]"
            )
        return factors


class Lora(Settings):
    """LoRA adapters (train.method: lora)."""

    where = "train.lora"
    r: int = Field(32, ge=1, description="Rank of the adapters.")
    alpha: int = Field(64, ge=1, description="Scaling: the adapters' output is multiplied by alpha / r.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapters' input.")
    target_modules: list[str] = Field(
        ["q_proj", "v_proj"], min_length=1, description="Modules that get adapters (names in Whisper's layers)."
    )


class SpecAugment(Settings):
    """SpecAugment through Whisper's own config (its fields, `apply` for apply_spec_augment): masks
    on the log-mel in training steps only; every saved model's config has it off."""

    where = "train.spec_augment"
    apply: bool = Field(False, description="Mask the log-mel in training steps.")
    mask_time_prob: float = Field(
        0.05, ge=0, lt=1, description="About this share of the 3000 frames is masked, in spans of mask_time_length."
    )
    mask_time_length: int = Field(10, ge=1, description="Frames (10 ms each) per time mask.")
    mask_time_min_masks: int = Field(2, ge=0, description="Time masks at least.")
    mask_feature_prob: float = Field(0.0, ge=0, lt=1, description="The same along the mel bins (0: none).")
    mask_feature_length: int = Field(10, ge=1, description="Mel bins per feature mask.")
    mask_feature_min_masks: int = Field(0, ge=0, description="Feature masks at least.")


# Train fields that Seq2SeqTrainingArguments has too, but which training.trainer_kwargs sets itself:
# eval_steps (null here: per epoch, with a strategy), metric_for_best_model (with greater_is_better),
# gradient_checkpointing (a deprecated alias there of activation_checkpointing).
SET_BY_TRAINING = frozenset({"eval_steps", "metric_for_best_model", "gradient_checkpointing"})


class Train(Settings):
    """The fine-tune: method, optimiser, schedule, evaluation and checkpoints."""

    where = "train"
    method: Literal["full", "lora", "freeze_encoder"] = Field(
        "full", description="What is trained: every weight, LoRA adapters, or the decoder only."
    )
    lora: Lora = Field(default_factory=Lora, description="The adapters of method lora.")
    learning_rate: float = Field(1e-5, gt=0, description="Peak learning rate.")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Share of the steps spent warming the rate up.")
    lr_scheduler_type: str = Field("cosine", description="transformers' learning-rate schedule after the warm-up.")
    num_train_epochs: float = Field(3.0, description="Passes over the training windows (when max_steps is -1).")
    max_steps: int = Field(-1, description="Optimiser steps; > 0 overrides num_train_epochs, -1 uses them.")
    per_device_train_batch_size: int = Field(16, ge=1, description="Training windows per step and device.")
    per_device_eval_batch_size: int = Field(32, ge=1, description="Val utterances per decoding batch and device.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Batches per optimiser step.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW's weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradients are clipped to this norm.")
    seed: int = Field(0, description="Initialisation, data order, dropout and masks.")
    precision: Precision = Field(
        "auto",
        description="Training precision (runtime.precision): auto is bf16 on GPUs that have it natively, else fp16, "
        "and fp32 on CPU; bf16 also runs on CPU.",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, more time."
    )
    group_by_length: bool = Field(False, description="Batches of similar label length: less decoder padding.")
    eval_steps: int | None = Field(
        None, ge=1, description="Steps between evaluations and checkpoints (null: once per epoch)."
    )
    eval_max_samples: int | None = Field(
        200, ge=1, description="Val utterances decoded per evaluation (null: all of them)."
    )
    eval_max_new_tokens: int = Field(
        128,
        ge=1,
        description="Tokens decoded per val utterance, as benchmark.max_new_tokens: the trainer's CER is "
        "the benchmark's.",
    )
    metric_for_best_model: Literal["cer_nospace", "cer", "wer"] = Field(
        "cer_nospace", description="The val metric that picks the best checkpoint and stops early."
    )
    early_stopping_patience: int | None = Field(
        3, ge=1, description="Evaluations without improvement before training stops (null: never stop early)."
    )
    early_stopping_threshold: float = Field(0.0, ge=0, description="Smallest change that counts as an improvement.")
    nproc_per_node: int = Field(1, ge=1, description="Processes, one per GPU; > 1: torchrun.")
    dataloader_num_workers: int = Field(0, ge=0, description="Data loading processes per training process.")
    dataloader_persistent_workers: bool = Field(
        False,
        description="Keep the data loading processes between evaluations (no restart, no page-cache refill); "
        "needs dataloader_num_workers > 0.",
    )
    logging_steps: int = Field(10, ge=1, description="Steps between logged training losses.")
    save_total_limit: int | None = Field(
        2, ge=1, description="Checkpoints kept (the best one always stays; null: all)."
    )
    spec_augment: SpecAugment = Field(
        default_factory=SpecAugment, description="Whisper's own SpecAugment: masks on the log-mel in training steps."
    )
    average_checkpoints: int | None = Field(
        None,
        ge=2,
        description="The saved model: the parameter mean of the N best checkpoints by metric_for_best_model (LoRA: "
        "of their adapters), kept only if its val score is no worse than the best checkpoint's; the N best stay on "
        "disk instead of save_total_limit's latest. null: the best checkpoint.",
    )

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, steps: int) -> int:
        if steps != -1 and steps <= 0:
            raise _invalid("train.max_steps must be -1 (use epochs) or positive")
        return steps

    @model_validator(mode="after")
    def _trains(self) -> Self:
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise _invalid(
                f"train.num_train_epochs is {self.num_train_epochs:g} with max_steps -1: that trains nothing; "
                "set a positive number of epochs or max_steps"
            )
        if self.dataloader_persistent_workers and self.dataloader_num_workers == 0:
            raise _invalid("train.dataloader_persistent_workers needs dataloader_num_workers > 0")
        return self

    def trainer_args(self) -> dict:
        """The fields Seq2SeqTrainingArguments takes as they are: those it has too, but SET_BY_TRAINING."""
        import dataclasses

        from transformers import Seq2SeqTrainingArguments  # here: importing config stays fast

        passed = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)} - SET_BY_TRAINING
        args = {name: getattr(self, name) for name in type(self).model_fields if name in passed}
        if self.average_checkpoints:  # training.KeepBest keeps the N best instead of the latest
            args["save_total_limit"] = None
        return args


# openai/whisper's `transcribe` defaults, which faster-whisper's `transcribe` shares.
WHISPER_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class Fallback(Settings):
    """Whisper's loop guards: a segment whose text compresses too well (a loop) or whose mean token
    log-probability is too low is decoded again at the next temperature (docs/benchmark.md, "Loop guards")."""

    where = "benchmark.fallback"
    apply: bool = Field(
        True,
        description="Guard the test utterances, as openai's and faster-whisper's transcribe do; whole calls always "
        "are.",
    )
    compare: bool = Field(
        False,
        description="Also decode the test utterances the other way: the report's guards on/off table (twice the "
        "decoding).",
    )
    temperatures: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        list(WHISPER_TEMPERATURES),
        min_length=1,
        description="Rising from 0 to at most 1: an output that fails a threshold is decoded again at the next.",
    )
    compression_ratio_threshold: float = Field(
        2.4, gt=1, description="Gzip compression ratio of the text above which it is a loop (openai, faster-whisper)."
    )
    # transformers measures the ratio on token ids; 1.35 is the counterpart of 2.4 its documentation gives
    token_compression_ratio_threshold: float = Field(1.35, gt=1, description="The same on token ids (transformers).")
    logprob_threshold: float = Field(-1.0, description="Mean log-probability of the segment's tokens, at least.")
    no_speech_threshold: float = Field(
        0.6,
        gt=0,
        lt=1,
        description="Whole calls: a window this likely silent, with a low log-probability, is skipped.",
    )

    @field_validator("temperatures")
    @classmethod
    def _rising(cls, temperatures: list[float]) -> list[float]:
        if temperatures != sorted(temperatures):
            raise _invalid(f"benchmark.fallback.temperatures must rise from 0 to at most 1, got {temperatures}")
        return temperatures


class LongForm(Settings):
    """Whole calls: each test session's utterances in order, with gaps, decoded as a deployment
    decodes a call (docs/benchmark.md, "Whole calls")."""

    where = "benchmark.long_form"
    apply: bool = Field(True, description="Decode the test sessions as whole calls.")
    gap_s: list[Annotated[float, Field(ge=0, le=10)]] = Field(
        [0.3, 1.0],
        min_length=2,
        max_length=2,
        description="Silence between a session's utterances, seconds: uniform in [low, high], seeded per call.",
    )
    condition_on_prev_tokens: bool | None = Field(
        None,
        description="Prompt each 30-s window with the previous one's text, which also carries a loop into the next "
        "window; null: each engine's own default (transformers off, faster-whisper's transcribe on).",
    )
    max_new_tokens: int = Field(
        MAX_TARGET_POSITIONS // 2,
        ge=1,
        le=MAX_TARGET_POSITIONS - 4,
        description="Tokens per 30-s window (openai's sample_len); Whisper's decoder takes 448 with the prefix.",
    )
    vad_batch_size: int = Field(
        8, ge=1, description="faster-whisper's BatchedInferencePipeline: VAD chunks decoded together."
    )

    @model_validator(mode="after")
    def _rising(self) -> Self:
        if self.gap_s[0] > self.gap_s[1]:
            raise _invalid(
                f"benchmark.long_form.gap_s must be [low, high] seconds with 0 <= low <= high <= 10, got {self.gap_s}"
            )
        return self


class Benchmark(Settings):
    """The test split scored with the fine-tune, its export and other models: quality and speed."""

    where = "benchmark"
    models: dict[str, Annotated[str, Field(min_length=1)]] = Field(
        {},
        description="alias: hub id or directory of each model scored beside the fine-tune (paths.model, alias "
        "`finetuned`) and its export (paths.export, `finetuned-ct2`).",
    )
    group_by: list[str] = Field([], description="Manifest fields reported beside category.")
    batch_size: int | None = Field(
        None, ge=1, description="Utterances per decoding batch (null: 64 per GPU, 16 per CPU worker)."
    )
    warmup_batches: int = Field(1, ge=0, description="Batches decoded once, untimed, before each worker's timed pass.")
    num_beams: int = Field(1, ge=1, description="1: greedy; 4-5 beams gain ~0.1-0.3 CER points at proportional cost.")
    max_new_tokens: int = Field(128, ge=1, description="Tokens decoded per test utterance at most.")
    max_samples: int | None = Field(None, ge=1, description="A seeded subset of the test split (null: all of it).")
    seed: int = Field(0, description="The subset, the bootstrap and the report's random predictions.")
    cpu_workers: int = Field(
        2, ge=1, description="Worker processes without a GPU (one thread each); with GPUs, one per GPU."
    )
    dtype: Precision = Field(
        "auto",
        description="Decoding precision (runtime.precision): auto is fp32 on CPU, bf16 on GPUs that have it "
        "natively, else fp16.",
    )
    batch_timeout_s: float = Field(
        600.0, gt=0, description="A worker silent this long (one batch, or loading a model) fails the run."
    )
    bootstrap_resamples: int = Field(1000, ge=0, description="Resamples of the 95% interval of cer_nospace (0: none).")
    kocer: bool = Field(False, description="Also score reading-equivalence CER (pip install 'whisper-ko[kocer]').")
    fallback: Fallback = Field(default_factory=Fallback, description="Loop guards: temperatures and thresholds.")
    long_form: LongForm = Field(
        default_factory=LongForm, description="Whole calls, decoded sequentially and in VAD chunks."
    )

    @field_validator("models")
    @classmethod
    def _aliases(cls, models: dict[str, str]) -> dict[str, str]:
        for alias, what in ((FINETUNED, "fine-tune (paths.model)"), (EXPORTED, "export (paths.export)")):
            if alias in models:
                raise _invalid(f"benchmark.models: `{alias}` is the pipeline's own {what}; give this one another alias")
        return models


class Export(Settings):
    """The fine-tune converted for faster-whisper (CTranslate2)."""

    where = "export"
    quantization: Literal["int8_float16", "int8", "float16", "float32"] = Field(
        "int8_float16",
        description="CTranslate2 weight type. int8_float16: int8 weights, float16 elsewhere, faster-whisper's usual "
        "GPU deployment (a CPU runs it as int8_float32); int8 and float32 for CPUs, float16 for full GPU precision.",
    )


SECTIONS: dict[str, type[Settings]] = {
    cls.where: cls for cls in (Paths, Discover, Text, Model, Preprocess, Train, Benchmark, Export)
}


def validate(cls: type[Settings], values) -> Settings:
    """`values` (a mapping, as YAML gives it) as a `cls`, or a ParamsError naming each bad parameter."""
    if not isinstance(values, dict):
        raise ParamsError(f"{cls.where}: expected a section of settings, got {values!r}")
    return cls(**values)


def load(path: str | Path, *sections: str) -> tuple:
    """The named sections of a params file as validated config objects, in the order asked."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        loader = _Loader(path.read_text(encoding="utf-8"))
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_duplicates(node)
            document = (loader.construct_document(node) if node is not None else None) or {}
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from err
    except ParamsError as err:
        raise ParamsError(f"{path}: {err}") from None
    if not isinstance(document, dict):
        raise ParamsError(f"{path}: expected sections (discover:, train:, …) at the top level")
    try:
        parsed = tuple(validate(SECTIONS[name], document.get(name, {})) for name in sections)
        found = {type(section): section for section in parsed}
        if Paths in found and Model in found:
            found[Paths].check_apart_from(found[Model].base)
    except ParamsError as err:
        raise ParamsError(f"{path}: {err}") from None
    return parsed
