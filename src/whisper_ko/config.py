"""params.yaml as typed, validated configuration: one frozen dataclass per section.

Every setting is declared once, here, with its default; the stages parse their sections with
`load` before anything is read, written or deleted, so a typo or a wrong type ends the run with
one line naming the parameter, never after hours of work or with a checkpoint directory cleared.
Library functions take these objects.
"""

import math
import os
import re
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Literal, Union, get_args, get_origin

import yaml

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
    """A key set twice in one mapping is an error: YAML loaders silently keep the last value."""
    if not isinstance(node, yaml.MappingNode):
        return
    seen = {}
    for key, value in node.value:
        name = f"{where}.{key.value}" if where else str(key.value)
        require(
            key.value not in seen,
            f"{name} is set twice (lines {seen.get(key.value, 0) + 1} and {key.start_mark.line + 1}): keep one",
        )
        seen[key.value] = key.start_mark.line
        _check_duplicates(value, name)


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ParamsError(message)


@dataclass(frozen=True)
class Paths:
    """Where the stages read and write, relative to the repository. dvc.yaml interpolates these
    same values (`${paths.features}`), so a path changed here moves for DVC and the stages at once."""

    listing: str = "data/corpus.tsv"  # discover.root's files with sizes and times: discover's DVC dependency
    manifests: str = "data/manifests"
    features: str = "data/features"
    model: str = "models/finetuned"  # the fine-tune; the benchmark scores it as `finetuned`
    checkpoints: str = "checkpoints/train"  # kept between runs: a rerun with the same params resumes
    curves: str = "dvclive"  # training curves and their last values
    metrics: str = "metrics/benchmark.json"  # quality, in git: `dvc metrics diff` between commits
    reports: str = "reports"
    # Timings of train and benchmark (<stage>.json, <stage>.md): they vary from run to run, so they are
    # neither in git nor DVC outputs, and a rerun on the same inputs leaves the tree clean.
    speed: str = "metrics/speed"
    export: str = "models/finetuned-ct2"  # the fine-tune for faster-whisper; benchmarked as `finetuned-ct2`

    def __post_init__(self):
        where = {f.name: os.path.abspath(getattr(self, f.name)) for f in fields(self)}
        for name, path in where.items():
            require(bool(getattr(self, name)), f"paths.{name} is empty: name a location")
            for other, inner in where.items():
                if other == name:
                    continue
                require(
                    path != inner, f"paths.{name} and paths.{other} are both {getattr(self, name)}: give each its own"
                )
                require(
                    name not in REPLACED or not _inside(inner, path),
                    f"paths.{other} {getattr(self, other)} is inside paths.{name} {getattr(self, name)}, which a stage "
                    f"replaces or clears: move one of them out of the other",
                )

    def check_apart_from(self, base: str) -> None:
        """paths.model must not be, hold or lie inside the base model's directory: saving would replace it."""
        model, base_dir = os.path.realpath(self.model), os.path.realpath(base)
        require(
            not (model == base_dir or _inside(model, base_dir) or _inside(base_dir, model)),
            f"paths.model {self.model} and model.base {base} overlap: saving the fine-tune would overwrite the base; "
            "give paths.model a location of its own",
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


@dataclass(frozen=True)
class Discover:
    root: str  # the corpus root (or a JSONL manifest)
    layout: Literal["auto", "aihub", "kspon", "plain", "jsonl"] = "auto"
    category_pattern: str | None = r"D\d\d"  # path component that names the category (None: none)
    max_duration: float = float(CHUNK_LENGTH)  # seconds; longer clips do not fit Whisper's window
    val_fraction: float = 0.1  # share of training sessions held out for early stopping
    val_max: int | None = 2000  # cap on val utterances
    # What val holds out whole, so that no val group is also trained on: `session` (speakers and
    # calls), or any manifest field, e.g. `template` in the sample corpus (sentences whose frame
    # training never hears: early stopping and checkpoint choice then reward listening).
    val_by: str = "session"
    test_fraction: float = 0.0  # held-out sessions as test, only for corpora without an evaluation side
    max_per_category: int | None = None  # per split, for quick subsets
    seed: int = 0
    workers: int | None = None  # None: CPU count
    # Where the workers run: `local`, processes on this host; `dask`, a Dask cluster's workers
    # (`scheduler` its address, e.g. tcp://10.0.0.1:8786; null: a local cluster of `workers`
    # processes). Each worker reads the corpus at discover.root's path and needs whisper-ko installed.
    engine: Literal["local", "dask"] = "local"
    scheduler: str | None = None

    def __post_init__(self):
        require(bool(self.root), "discover.root is empty: set it to the corpus root")
        require(
            self.scheduler is None or self.engine == "dask",
            "discover.scheduler is set but discover.engine is local: set engine: dask, or scheduler: null",
        )
        try:
            re.compile(self.category_pattern or "")
        except re.error as err:
            raise ParamsError(
                f"discover.category_pattern {self.category_pattern!r} is not a regular expression ({err}); "
                r"e.g. 'D\d\d', or null for no categories"
            ) from None
        require(
            0 < self.max_duration <= CHUNK_LENGTH,
            f"discover.max_duration must be in (0, {CHUNK_LENGTH}] seconds (Whisper's window)",
        )
        for name in ("val_fraction", "test_fraction"):
            require(0 <= getattr(self, name) < 1, f"discover.{name} must be in [0, 1)")
        _positive(self, "discover", "val_max", "max_per_category", "workers")
        require(bool(self.val_by), "discover.val_by is empty: name a manifest field such as session")


@dataclass(frozen=True)
class Text:
    side: Literal["spelling", "pronunciation"] = "spelling"  # which side of (A)/(B) dual transcriptions
    fillers: Literal["keep", "drop"] = "keep"  # 어/ → 어, or removed
    masked: Literal["drop", "remove"] = "drop"  # utterances with ((…)) spans skipped, or the span removed


@dataclass(frozen=True)
class Model:
    base: str  # hub id (openai/whisper-large-v3-turbo) or a local directory
    language: str = "ko"
    task: Literal["transcribe", "translate"] = "transcribe"
    attention: Attention = "sdpa"  # see runtime.attention_candidates

    def __post_init__(self):
        require(bool(self.base), "model.base is empty: set a hub id or a local Whisper directory")


@dataclass(frozen=True)
class Noise:
    """Noisy extra copies of training utterances (MUSAN-style): a seeded recording from `root`,
    mixed in at a seeded signal-to-noise ratio."""

    root: str | None = None  # folder of noise recordings (wav, flac, ogg, mp3; searched recursively); None: off
    snr_db: list[float] = field(default_factory=lambda: [10.0, 20.0])  # [low, high]: uniform in between
    share: float = 1.0  # of training utterances given a noisy copy

    def __post_init__(self):
        require(
            len(self.snr_db) == 2 and self.snr_db[0] <= self.snr_db[1],
            f"preprocess.noise.snr_db must be [low, high] in dB, got {self.snr_db}",
        )
        require(0 < self.share <= 1, "preprocess.noise.share must be in (0, 1]")


SPEED_RANGE = (0.5, 2.0)  # beyond, a copy no longer sounds like speech at another pace


@dataclass(frozen=True)
class Pack:
    """Training windows that hold several consecutive utterances, as Whisper was pre-trained: the
    encoder's 30 s then carry speech instead of padding (README, "Packed windows")."""

    # seeded groups within a category (measured: README, "Packed windows"), or a session's utterances
    # in their order; None: one utterance per window
    by: Literal["session", "category"] | None = "category"
    max_s: float = float(CHUNK_LENGTH)  # seconds of audio per window, gaps included
    # silence between utterances, seconds: uniform in [low, high], seeded per window
    gap_s: list[float] = field(default_factory=lambda: [0.1, 0.6])
    timestamps: float = 0.5  # share of windows labelled with segment timestamps (the others: <|notimestamps|>)
    single: float = 0.0  # share of utterances also kept as a window of their own (short-form training)

    def __post_init__(self):
        require(
            1 <= self.max_s <= CHUNK_LENGTH,
            f"preprocess.pack.max_s must be in [1, {CHUNK_LENGTH}] seconds (Whisper's window)",
        )
        require(
            len(self.gap_s) == 2 and 0 <= self.gap_s[0] <= self.gap_s[1] <= self.max_s / 2,
            f"preprocess.pack.gap_s must be [low, high] seconds with 0 <= low <= high <= max_s / 2, got {self.gap_s}",
        )
        for name in ("timestamps", "single"):
            require(0 <= getattr(self, name) <= 1, f"preprocess.pack.{name} must be in [0, 1] (a share)")


@dataclass(frozen=True)
class Preprocess:
    dtype: Literal["float16", "float32"] = "float16"  # stored feature precision
    max_label_tokens: int = MAX_TARGET_POSITIONS  # including the 4-token prefix; longer labels are skipped
    min_duration: float = 0.1  # seconds
    shard_size: int = 1000  # records per shard (an utterance, or a packed window)
    workers: int | None = None  # None: CPU count
    silent_audio: Literal["keep", "skip"] = "keep"  # clips of digital silence whose label has text
    # Kaldi-style speed perturbation: per factor, an extra copy of every training utterance resampled
    # to that speed (pitch moves with it), e.g. [0.9, 1.1]. Never val or test.
    speed_perturb: list[float] = field(default_factory=list)
    noise: Noise = field(default_factory=Noise)  # noisy training copies; off without noise.root
    pack: Pack = field(default_factory=Pack)  # training windows of several utterances; off without pack.by
    seed: int = 0  # the noise recordings, offsets and SNRs per utterance; the packing's groups, gaps and shares

    def __post_init__(self):
        require(
            5 <= self.max_label_tokens <= MAX_TARGET_POSITIONS,
            f"preprocess.max_label_tokens must be in [5, {MAX_TARGET_POSITIONS}] (Whisper's decoder)",
        )
        require(self.min_duration >= 0, "preprocess.min_duration must be 0 or more")
        _positive(self, "preprocess", "shard_size", "workers")
        low, high = SPEED_RANGE
        require(
            all(low <= f <= high and f != 1 for f in self.speed_perturb)
            and len(set(self.speed_perturb)) == len(self.speed_perturb),
            f"preprocess.speed_perturb {self.speed_perturb}: distinct factors in [{low}, {high}], "
            "not 1 (the original is always kept), e.g. [0.9, 1.1]",
        )


@dataclass(frozen=True)
class Lora:
    r: int = 32
    alpha: int = 64
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])

    def __post_init__(self):
        _positive(self, "train.lora", "r", "alpha")
        require(0 <= self.dropout < 1, "train.lora.dropout must be in [0, 1)")
        require(bool(self.target_modules), "train.lora.target_modules is empty")


@dataclass(frozen=True)
class SpecAugment:
    """SpecAugment through Whisper's own config (its fields, `apply` for apply_spec_augment): masks
    on the log-mel in training steps only; every saved model's config has it off."""

    apply: bool = False
    mask_time_prob: float = 0.05  # about this share of the 3000 frames masked, in spans of
    mask_time_length: int = 10  # frames (10 ms each)
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0  # the same along the mel bins (0: none)
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0

    def __post_init__(self):
        for name in ("mask_time_prob", "mask_feature_prob"):
            require(0 <= getattr(self, name) < 1, f"train.spec_augment.{name} must be in [0, 1)")
        _positive(self, "train.spec_augment", "mask_time_length", "mask_feature_length")
        require(
            self.mask_time_min_masks >= 0 and self.mask_feature_min_masks >= 0,
            "train.spec_augment.mask_time_min_masks and mask_feature_min_masks must be 0 or more",
        )


# Train fields passed to Seq2SeqTrainingArguments as they are.
TRAINER_FIELDS = (
    "learning_rate",
    "lr_scheduler_type",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "max_grad_norm",
    "seed",
    "dataloader_num_workers",
    "dataloader_persistent_workers",
    "logging_steps",
    "save_total_limit",
)


@dataclass(frozen=True)
class Train:
    method: Literal["full", "lora", "freeze_encoder"] = "full"
    lora: Lora = field(default_factory=Lora)
    learning_rate: float = 1e-5
    warmup_ratio: float = 0.1
    lr_scheduler_type: str = "cosine"
    num_train_epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    per_device_train_batch_size: int = 16
    per_device_eval_batch_size: int = 32
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    precision: Precision = "auto"  # see runtime.precision
    gradient_checkpointing: bool = False
    group_by_length: bool = False  # batches of similar label length: less decoder padding
    eval_steps: int | None = None  # None: evaluate and checkpoint once per epoch
    eval_max_samples: int | None = 200  # val utterances decoded per evaluation
    eval_max_new_tokens: int = 128  # as benchmark.max_new_tokens: the trainer's CER is the benchmark's
    metric_for_best_model: Literal["cer_nospace", "cer", "wer"] = "cer_nospace"
    early_stopping_patience: int | None = 3  # evaluations without improvement (None: never stop early)
    early_stopping_threshold: float = 0.0
    nproc_per_node: int = 1  # > 1: torchrun, one process per GPU
    dataloader_num_workers: int = 0
    dataloader_persistent_workers: bool = False
    logging_steps: int = 10
    save_total_limit: int | None = 2  # checkpoints kept (the best one always stays)
    spec_augment: SpecAugment = field(default_factory=SpecAugment)
    # The saved model: the parameter mean of the N best checkpoints by metric_for_best_model (LoRA:
    # of their adapters), kept only if its val score is no worse than the best checkpoint's; the N
    # best stay on disk instead of save_total_limit's latest. None: the best checkpoint.
    average_checkpoints: int | None = None

    def __post_init__(self):
        require(self.learning_rate > 0, "train.learning_rate must be positive")
        require(0 <= self.warmup_ratio < 1, "train.warmup_ratio must be in [0, 1)")
        require(self.max_steps == -1 or self.max_steps > 0, "train.max_steps must be -1 (use epochs) or positive")
        require(
            self.max_steps > 0 or self.num_train_epochs > 0,
            f"train.num_train_epochs is {self.num_train_epochs:g} with max_steps -1: that trains nothing; "
            "set a positive number of epochs or max_steps",
        )
        _positive(
            self,
            "train",
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
            "eval_steps",
            "eval_max_samples",
            "eval_max_new_tokens",
            "early_stopping_patience",
            "nproc_per_node",
            "logging_steps",
            "save_total_limit",
        )
        require(
            self.average_checkpoints is None or self.average_checkpoints >= 2,
            f"train.average_checkpoints must be 2 or more (null: no averaging), got {self.average_checkpoints}",
        )
        require(
            self.max_grad_norm > 0 and self.weight_decay >= 0 and self.early_stopping_threshold >= 0,
            "train.max_grad_norm must be positive, weight_decay and early_stopping_threshold 0 or more",
        )
        require(self.dataloader_num_workers >= 0, "train.dataloader_num_workers must be 0 or more")
        require(
            not self.dataloader_persistent_workers or self.dataloader_num_workers > 0,
            "train.dataloader_persistent_workers needs dataloader_num_workers > 0",
        )

    def trainer_args(self) -> dict:
        """The fields Seq2SeqTrainingArguments takes as they are."""
        args = {name: getattr(self, name) for name in TRAINER_FIELDS}
        if self.average_checkpoints:  # training.KeepBest keeps the N best instead of the latest
            args["save_total_limit"] = None
        return args


# openai/whisper's `transcribe` defaults, which faster-whisper's `transcribe` shares.
WHISPER_TEMPERATURES = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


@dataclass(frozen=True)
class Fallback:
    """Whisper's loop guards: a segment whose text compresses too well (a loop) or whose mean token
    log-probability is too low is decoded again at the next temperature (README, "Loop guards")."""

    apply: bool = True  # on test utterances, as openai's and faster-whisper's transcribe; calls always
    # also decode the test utterances the other way: the report's guards on/off table (twice the decoding)
    compare: bool = False
    temperatures: list[float] = field(default_factory=lambda: list(WHISPER_TEMPERATURES))
    compression_ratio_threshold: float = 2.4  # gzip ratio of the text (openai, faster-whisper)
    # transformers measures the ratio on token ids; 1.35 is the counterpart of 2.4 its documentation gives
    token_compression_ratio_threshold: float = 1.35
    logprob_threshold: float = -1.0  # mean log-probability of the segment's tokens
    no_speech_threshold: float = 0.6  # with a low log-probability: the segment is silence, skipped (calls)

    def __post_init__(self):
        require(
            self.temperatures
            and self.temperatures == sorted(self.temperatures)
            and all(0 <= t <= 1 for t in self.temperatures),
            f"benchmark.fallback.temperatures must rise from 0 to at most 1, got {self.temperatures}",
        )
        require(
            self.compression_ratio_threshold > 1 and self.token_compression_ratio_threshold > 1,
            "benchmark.fallback's compression ratio thresholds must be above 1 (text that does not compress)",
        )
        require(0 < self.no_speech_threshold < 1, "benchmark.fallback.no_speech_threshold must be in (0, 1)")


@dataclass(frozen=True)
class LongForm:
    """Whole calls: each test session's utterances in order, with gaps, decoded as a deployment
    decodes a call (README, "Whole calls")."""

    apply: bool = True
    # silence between a session's utterances, seconds: uniform in [low, high], seeded per call
    gap_s: list[float] = field(default_factory=lambda: [0.3, 1.0])
    # prompt each 30-s window with the previous one's text, which also carries a loop into the next
    # window; None: each engine's own default (transformers off, faster-whisper's transcribe on)
    condition_on_prev_tokens: bool | None = None
    max_new_tokens: int = MAX_TARGET_POSITIONS // 2  # per 30-s window: openai's sample_len
    vad_batch_size: int = 8  # faster-whisper's BatchedInferencePipeline: VAD chunks decoded together

    def __post_init__(self):
        require(
            len(self.gap_s) == 2 and 0 <= self.gap_s[0] <= self.gap_s[1] <= 10,
            f"benchmark.long_form.gap_s must be [low, high] seconds with 0 <= low <= high <= 10, got {self.gap_s}",
        )
        require(
            1 <= self.max_new_tokens <= MAX_TARGET_POSITIONS - 4,
            f"benchmark.long_form.max_new_tokens must be in [1, {MAX_TARGET_POSITIONS - 4}] (Whisper's decoder)",
        )
        _positive(self, "benchmark.long_form", "vad_batch_size")


@dataclass(frozen=True)
class Benchmark:
    # alias: hub id or directory, scored beside the fine-tune (paths.model, alias `finetuned`)
    models: dict[str, str] = field(default_factory=dict)
    group_by: list[str] = field(default_factory=list)  # manifest fields reported beside category
    batch_size: int | None = None  # None: 64 per GPU, 16 per CPU worker
    warmup_batches: int = 1  # decoded once, untimed, before each worker's timed pass
    num_beams: int = 1  # greedy; 4-5 beams gain ~0.1-0.3 CER points at proportional cost
    max_new_tokens: int = 128
    max_samples: int | None = None  # seeded subset of the test split
    seed: int = 0  # subset, bootstrap and the report's random predictions
    cpu_workers: int = 2  # worker processes without a GPU (one thread each); with GPUs, one per GPU
    dtype: Precision = "auto"  # see runtime.precision
    batch_timeout_s: float = 600.0  # a worker silent this long (one batch, or loading a model) fails the run
    bootstrap_resamples: int = 1000  # 95% interval of cer_nospace (0: none)
    kocer: bool = False  # also score reading-equivalence CER (pip install 'whisper-ko[kocer]')
    fallback: Fallback = field(default_factory=Fallback)  # loop guards: temperatures and thresholds
    long_form: LongForm = field(default_factory=LongForm)  # whole calls, sequential and VAD-chunked

    def __post_init__(self):
        for alias, what in ((FINETUNED, "fine-tune (paths.model)"), (EXPORTED, "export (paths.export)")):
            require(
                alias not in self.models,
                f"benchmark.models: `{alias}` is the pipeline's own {what}; give this one another alias",
            )
        require(all(self.models.values()), "benchmark.models: every alias needs a hub id or a directory")
        require(
            self.warmup_batches >= 0 and self.bootstrap_resamples >= 0,
            "benchmark.warmup_batches and bootstrap_resamples must be 0 or more",
        )
        require(self.batch_timeout_s > 0, "benchmark.batch_timeout_s must be positive")
        _positive(self, "benchmark", "batch_size", "num_beams", "max_new_tokens", "max_samples", "cpu_workers")


@dataclass(frozen=True)
class Export:
    # CTranslate2 weight type. int8_float16: int8 weights, float16 elsewhere, faster-whisper's usual GPU
    # deployment (a CPU runs it as int8_float32); int8 and float32 for CPUs, float16 for full GPU precision.
    quantization: Literal["int8_float16", "int8", "float16", "float32"] = "int8_float16"


SECTIONS = {
    "paths": Paths,
    "discover": Discover,
    "text": Text,
    "model": Model,
    "preprocess": Preprocess,
    "train": Train,
    "benchmark": Benchmark,
    "export": Export,
}


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
    require(isinstance(document, dict), f"{path}: expected sections (discover:, train:, …) at the top level")
    try:
        parsed = tuple(parse(SECTIONS[name], document.get(name, {}), name) for name in sections)
        found = {type(section): section for section in parsed}
        if Paths in found and Model in found:
            found[Paths].check_apart_from(found[Model].base)
    except ParamsError as err:
        raise ParamsError(f"{path}: {err}") from None
    return parsed


def parse(cls: type, values, name: str):
    """`values` (a mapping from YAML) as an instance of the dataclass `cls`, every field checked."""
    require(isinstance(values, dict), f"{name}: expected a section of settings, got {values!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    require(
        not unknown,
        f"unknown parameter(s) {', '.join(f'{name}.{k}' for k in unknown)}; known: {', '.join(sorted(known))}",
    )
    missing = [k for k, f in known.items() if k not in values and f.default is MISSING and f.default_factory is MISSING]
    require(not missing, f"{', '.join(f'{name}.{k}' for k in missing)} must be set")
    return cls(**{key: _value(values[key], hints[key], f"{name}.{key}") for key in values})


def _value(value, kind, name: str):
    origin, args = get_origin(kind), get_args(kind)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _value(value, option, name)
            except ParamsError:
                continue
        raise ParamsError(f"{name}: expected {_describe(kind)}, got {value!r}")
    if origin is Literal:
        require(value in args, f"{name} {value!r}: choose one of {', '.join(map(str, args))}")
        return value
    if is_dataclass(kind):
        return parse(kind, value, name)
    if origin is list:
        require(isinstance(value, list), f"{name}: expected a list, got {value!r}")
        return [_value(item, args[0], f"{name}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        require(isinstance(value, dict), f"{name}: expected a mapping, got {value!r}")
        return {_value(k, args[0], f"{name} key"): _value(v, args[1], f"{name}.{k}") for k, v in value.items()}
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[kind]
    require(ok, f"{name}: expected {_describe(kind)}, got {value!r}")
    if kind is float:
        require(math.isfinite(value), f"{name}: expected a finite number, got {value!r}")
        return float(value)
    return value


def _describe(kind) -> str:
    if get_origin(kind) in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(kind))
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}.get(
        kind, str(kind)
    )


def _positive(config, section: str, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        require(value is None or value >= 1, f"{section}.{name} must be at least 1, got {value}")
