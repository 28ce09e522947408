"""Score models on the test manifest: one worker process per device, results streamed back.

The main process plans the work (utterances sorted by duration, cut into batches, dealt
round-robin to the workers) and then only collects. Each worker loads one model at a time, reads
and featurises the audio of one batch at a time (the next one in a thread while the current one
decodes), and sends the hypotheses back through a queue, so its memory depends on the batch size,
never on the size of the test set. A worker that raises, dies or stays silent for
`batch_timeout_s` ends the run with an error naming the model and batch.

The same workers decode the test utterances with and without Whisper's loop guards (a worker
keeps a model loaded across its decodings) and the test sessions as whole calls (`long_form`).

Speed is measured as the Open ASR Leaderboard measures it: warm-up batches first, untimed (CUDA
start-up, cuDNN autotuning, allocator growth), then RTFx = audio seconds / decoding seconds per
device, beside the node's figure over the slowest worker's wall time.
"""

import math
import multiprocessing as mp
import os
import queue
import resource
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import torch
import transformers
from tqdm import tqdm

from whisper_ko import checks, config, deploy, inference, long_form, metrics, runtime
from whisper_ko.errors import UserError

# How often the main process looks at its workers while waiting for results.
_POLL_S = 1.0
_EXIT_GRACE_S = 30.0  # how long a worker that finished may take to exit before it is killed
# Default batch sizes: the Open ASR Leaderboard's on a GPU; on a single-threaded CPU worker a larger
# batch only pads more hypotheses to the longest one.
GPU_BATCH_SIZE = 64
CPU_BATCH_SIZE = 16


class BenchmarkError(UserError):
    """The run cannot go on: a worker raised, died or hung (the message names model and batch)."""


@dataclass(frozen=True)
class Options:
    """How the workers run: the params' settings, taken from the config sections (which hold their
    defaults) by `of`."""

    decoding: inference.Decoding  # of a model given as a path (see `transcribe`)
    batch_size: int | None  # None: GPU_BATCH_SIZE on GPUs, CPU_BATCH_SIZE on CPU workers
    warmup_batches: int  # each worker's first batches decoded once more before timing starts, untimed
    dtype: str  # see runtime.precision
    attention: str  # see runtime.attention_candidates
    cpu_workers: int  # worker processes when there is no GPU (one thread each)
    processor_fallback: str | None  # processor of weights-only directories (training checkpoints)
    batch_timeout_s: float  # longest silence of a worker: one batch, or loading a model

    @classmethod
    def of(cls, settings: config.Benchmark, model: config.Model) -> "Options":
        """The benchmark's options as the params say: the test utterances decoded by `inference.Decoding.of`,
        training checkpoints with the base model's processor."""
        return cls(
            decoding=inference.Decoding.of(settings, model),
            batch_size=settings.batch_size,
            warmup_batches=settings.warmup_batches,
            dtype=settings.dtype,
            attention=model.attention,
            cpu_workers=settings.cpu_workers,
            processor_fallback=model.base,
            batch_timeout_s=settings.batch_timeout_s,
        )


@dataclass(frozen=True)
class Timing:
    """One worker's pass over its batches with one model (warm-up and model load excluded)."""

    device: str
    audio_s: float  # audio in this worker's batches
    decode_s: float  # inside generate(), synchronised with the GPU
    wall_s: float  # first timed batch to the last one's result, reading and featurising included


@dataclass
class Transcripts:
    """One model's output over the whole manifest, in manifest order."""

    hypotheses: list[str | None]  # None: the audio could not be read (see errors)
    errors: dict[int, str]  # manifest index → why its audio could not be read
    timings: list[Timing] = field(default_factory=list)  # one per worker
    peak_rss_mb: float = 0.0  # largest worker's peak resident memory
    attention: str = ""  # attention implementation the workers ended up with
    dtype: str = ""  # the weights' and activations' dtype
    batch_size: int = 0
    counts: list[dict | None] = field(default_factory=list)  # the scorer's, where the workers scored


@dataclass(frozen=True)
class Scoring:
    """How hypotheses are scored and grouped: the params' settings, taken from benchmark by `of`."""

    group_by: tuple[str, ...]  # manifest fields to report per value of
    kocer: bool  # also reading-equivalence CER (metrics.kocer_scores)
    resamples: int  # bootstrap resamples of the cer_nospace interval (0: none)
    seed: int

    @classmethod
    def of(cls, settings: config.Benchmark, rows: list[dict]) -> "Scoring":
        """Scoring as the params say, by category and benchmark.group_by's fields (each one some of `rows` has)."""
        return cls(group_fields(rows, settings.group_by), settings.kocer, settings.bootstrap_resamples, settings.seed)


# What a worker tells the main process, in order: per model Ready, a BatchDone per batch, ModelDone.
@dataclass(frozen=True)
class Ready:
    rank: int
    model: int  # index into the run's models


@dataclass(frozen=True)
class BatchDone:
    rank: int
    model: int
    batch: int  # index into this worker's batches
    hypotheses: list
    errors: dict[int, str]  # manifest index → why its audio could not be read
    counts: list | None = None  # the scorer's counts per utterance (None where its audio failed)


@dataclass(frozen=True)
class ModelDone:
    rank: int
    model: int
    timing: "Timing"
    peak_rss_mb: float
    attention: str
    dtype: str


@dataclass(frozen=True)
class Failed:
    rank: int
    message: str  # a user error's own message, or "raised:" and a traceback


@dataclass
class Result:
    metrics: dict  # quality: {"overall": {...}, "by_<field>": {group: {...}}}, numbers only
    predictions: list[dict]  # per utterance, in manifest order
    transcripts: Transcripts
    speed: dict = field(default_factory=dict)  # `speed`: varies from run to run, kept apart from quality
    scored: list[dict] = field(default_factory=list)  # per-utterance counts (metrics.utterance_scores)


@dataclass(frozen=True)
class Change:
    """One corpus-level rate of two models on the same utterances."""

    before: float  # the baseline's
    after: float
    change: float  # after - before: negative is better
    ci_low: float | None  # 95% paired interval of the change (None without resamples)
    ci_high: float | None
    interval: str | None = None  # how it was found: metrics.interval_method


@dataclass(frozen=True)
class Comparison:
    """A model against the one it came from (the fine-tune against its base, an export against its
    source), paired over the utterances both scored."""

    kind: str  # "base" or "source": what the baseline is to the candidate
    baseline: str  # alias
    candidate: str
    n: int
    cer: Change
    cer_nospace: Change
    changed: float  # share of these utterances whose transcript differs

    def metrics(self) -> dict:
        out = {}
        for name in ("cer", "cer_nospace"):
            change = getattr(self, name)
            out |= {
                f"{name}_change": change.change,
                f"{name}_change_ci_low": change.ci_low,
                f"{name}_change_ci_high": change.ci_high,
            }
        return {**out, "share_transcripts_changed": self.changed, "n": self.n}


def subset(rows: list[dict], max_samples: int | None, seed: int) -> list[dict]:
    """A seeded subset in manifest order (the same utterances for every model)."""
    if not max_samples or max_samples >= len(rows):
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), max_samples, replace=False))
    return [rows[i] for i in keep]


def group_fields(rows: list[dict], extra: list[str]) -> tuple[str, ...]:
    """`category` plus the requested manifest fields; a field no utterance has is an error."""
    fields = tuple(dict.fromkeys(["category", *extra]))
    present = set().union(*(row.keys() for row in rows))
    missing = [f for f in fields if f not in present]
    if missing:
        raise UserError(f"benchmark.group_by: no test utterance has {missing}; fields: {sorted(present)}")
    return fields


@dataclass
class Run:
    """Everything the benchmark stage measured."""

    results: dict[str, Result]  # per model, on the test utterances (loop guards as benchmark.fallback.apply says)
    comparisons: list[Comparison]  # the fine-tune against its base, each export against its source
    guards: dict[str, "Guards"] = field(default_factory=dict)  # per model: with the loop guards and without
    # per model and decoding method ("sequential", "vad"): the test sessions as whole calls
    calls: dict[str, dict[str, Result]] = field(default_factory=dict)


@dataclass(frozen=True)
class Guards:
    """One model on the test utterances with Whisper's loop guards and without them."""

    on: Result
    off: Result
    change: Comparison  # with against without, paired over the utterances
    applied: bool  # the run's own results are `on` (benchmark.fallback.apply)

    @property
    def switched(self) -> tuple[str, Result]:
        """The decoding the rest of the run does not use: its name and its results."""
        return _switched(self.applied), self.off if self.applied else self.on


GUARDED, UNGUARDED = "with loop guards", "without loop guards"


def benchmark(settings: config.Benchmark, model: config.Model, rows: list[dict], models: dict[str, str]) -> Run:
    """The benchmark stage's run: `models` on `rows` as the params say (the utterances, with and
    without the loop guards where asked, then the sessions as whole calls), and their comparisons."""
    options = Options.of(settings, model)
    scoring = Scoring.of(settings, rows)
    # the test utterances as the params say (`chosen`: with the loop guards or without), and the other way
    chosen = options.decoding
    other = replace(chosen, guards=None if settings.fallback.apply else settings.fallback)
    plain = replace(chosen, guards=None)
    jobs = {}
    for alias, path in models.items():  # a model's two decodings in a row: the worker loads it once
        jobs[alias] = (path, chosen)
        if settings.fallback.compare:
            jobs[_other(alias, settings.fallback.apply)] = (path, other)
    found = run(jobs, rows, options, scoring)
    results = {alias: found[alias] for alias in models}
    guards = {}
    if settings.fallback.compare:
        for alias in models:
            other = found[_other(alias, settings.fallback.apply)]
            on, off = (found[alias], other) if settings.fallback.apply else (other, found[alias])
            change = compare({GUARDED: on, UNGUARDED: off}, UNGUARDED, GUARDED, scoring, "guards")
            guards[alias] = Guards(on, off, change, settings.fallback.apply)
    calls = {}
    if settings.long_form.apply:
        calls = long_form_run(settings, plain, rows, models, options, scoring)
    return Run(results, comparisons(results, models, model.base, scoring), guards, calls)


def _switched(applied: bool) -> str:
    """What decoding the other way is: the guards off where the run applies them."""
    return f"loop guards {'off' if applied else 'on'}"


def _other(alias: str, applied: bool) -> str:
    return f"{alias} · {_switched(applied)}"


def long_form_run(
    settings: config.Benchmark,
    decoding: inference.Decoding,
    rows: list[dict],
    models: dict[str, str],
    options: Options,
    scoring: Scoring,
) -> dict[str, dict[str, Result]]:
    """The test sessions as whole calls, decoded by every model the ways it is deployed: sequential
    windows (transformers' long-form generate, faster-whisper's transcribe), and faster-whisper's
    VAD chunks for CTranslate2 models; always with the loop guards."""
    calls = long_form.calls(rows, settings.long_form.gap_s, settings.seed)
    decoding = replace(
        decoding,
        guards=settings.fallback,
        max_new_tokens=settings.long_form.max_new_tokens,
        condition_on_prev_tokens=settings.long_form.condition_on_prev_tokens,
        vad_batch_size=settings.long_form.vad_batch_size,
    )
    jobs, named = {}, {}
    for alias, path in models.items():
        for method in ("sequential", "vad") if checks.is_ctranslate2(path) else ("sequential",):
            key = f"{alias} · {method}"
            jobs[key], named[key] = (path, replace(decoding, method=method)), (alias, method)
    out: dict[str, dict[str, Result]] = {}
    for key, transcripts in transcribe(jobs, calls, options, long_form.score).items():
        alias, method = named[key]
        table, predictions, scored = score_calls(calls, transcripts, scoring)
        out.setdefault(alias, {})[method] = Result(table, predictions, transcripts, speed(calls, transcripts), scored)
    return out


def score_calls(calls: list[dict], found: Transcripts, scoring: Scoring) -> tuple[dict, list[dict], list[dict]]:
    """Metrics of whole calls (overall and per category), per-call predictions with their segments,
    and per-call counts."""
    scored, predictions = [], []
    for i, call in enumerate(calls):
        out = found.hypotheses[i]
        entry = {"id": call["id"], "category": call["category"], "duration": call["duration"]}
        if out is None:
            scored.append({"category": call["category"], "error": found.errors[i]})
            predictions.append({**entry, "reference": call["text"], "hypothesis": None, "error": found.errors[i]})
            continue
        counts = {**(found.counts[i] if found.counts else long_form.score(call, out)), "category": call["category"]}
        scored.append(counts)
        predictions.append(
            {
                **entry,
                "utterances": call["utterances"],
                "reference": call["text"],
                "hypothesis": out["text"],
                "cer": metrics.utterance_rate(counts),
                "cer_nospace": metrics.utterance_rate(counts, "nospace"),
                **{k: counts[k] for k in ("loop", "capped", "fallback", "monotonic", "within")},
                "speech_covered": round(counts["covered_s"] / counts["speech_s"], 4) if counts["speech_s"] else None,
                "reference_spans": call["spans"],
                "segments": out["segments"],
            }
        )
    kwargs = {"resamples": scoring.resamples, "seed": scoring.seed}
    table = {
        "overall": long_form.aggregate(scored, **kwargs),
        "by_category": metrics.by_group(scored, "category", summary=long_form.aggregate, **kwargs),
    }
    return table, predictions, scored


def comparisons(results: dict[str, Result], models: dict[str, str], base: str, scoring: Scoring) -> list[Comparison]:
    """The fine-tune against the base model, where both were scored, and each CTranslate2 export
    against the model it was exported from, where that was scored."""
    found = []
    baseline = baseline_alias(models, base)
    if baseline and config.FINETUNED in results:
        found.append(compare(results, baseline, config.FINETUNED, scoring, "base"))
    for alias, path in models.items():
        source = deploy.source_of(path)
        if source is None:
            continue
        # the fine-tune first: in a test or a quick look the base may be the very same directory
        others = sorted((a for a in models if a != alias), key=lambda a: a != config.FINETUNED)
        origin = next((a for a in others if _same_path(models[a], source)), None)
        if origin:
            found.append(compare(results, origin, alias, scoring, "source"))
    return found


def _same_path(a: str, b: str) -> bool:
    return a == b or (os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b))


def baseline_alias(models: dict[str, str], base: str) -> str | None:
    """The alias under which `models` scores the base model itself (zero-shot), if any."""
    return next((alias for alias, path in models.items() if alias != config.FINETUNED and _same_path(path, base)), None)


def compare(
    results: dict[str, Result], baseline: str, candidate: str, scoring: Scoring, kind: str = "base"
) -> Comparison:
    """`candidate` against `baseline` on the utterances both scored: CER and no-space CER before and
    after, each change with its paired interval (the same utterances drawn for both), and
    the share of transcripts that differ."""
    pairs = [
        i
        for i, (b, c) in enumerate(zip(results[baseline].scored, results[candidate].scored, strict=True))
        if "error" not in b and "error" not in c and b["nospace_chars"] > 0
    ]
    if not pairs:
        raise UserError(f"no test utterance was scored for both {baseline!r} and {candidate!r}")

    def change(edits: str, chars: str) -> Change:
        counts = np.array(
            [[results[a].scored[i][edits] for a in (baseline, candidate)] for i in pairs], dtype=np.float64
        )
        lengths = np.array([results[baseline].scored[i][chars] for i in pairs], dtype=np.float64)
        before, after = counts.sum(axis=0) / max(lengths.sum(), 1.0)
        low = high = method = None
        if scoring.resamples:
            low, high = metrics.rate_interval(
                counts[:, 1] - counts[:, 0], lengths.tolist(), resamples=scoring.resamples, seed=scoring.seed
            )
            method = metrics.interval_method(len(pairs))
        return Change(round(before, 6), round(after, 6), round(after - before, 6), low, high, method)

    hypotheses = [results[a].transcripts.hypotheses for a in (baseline, candidate)]
    changed = sum(hypotheses[0][i] != hypotheses[1][i] for i in pairs) / len(pairs)
    return Comparison(
        kind,
        baseline,
        candidate,
        len(pairs),
        change("char_edits", "chars"),
        change("nospace_edits", "nospace_chars"),
        round(changed, 6),
    )


def restrict(results: dict[str, Result], indices: list[int]) -> dict[str, Result]:
    """The results on some utterances only (their transcripts and counts), for a paired comparison on those alone."""
    return {
        alias: Result(
            {},
            [],
            Transcripts([r.transcripts.hypotheses[i] for i in indices], {}),
            {},
            [r.scored[i] for i in indices],
        )
        for alias, r in results.items()
    }


def run(models: dict[str, str | tuple], rows: list[dict], options: Options, scoring: Scoring) -> dict[str, Result]:
    """Transcribe `rows` with every model and score them, per group of each `scoring.group_by` field."""
    if scoring.kocer:
        metrics.kocer_module()
    results = {}
    scorer = partial(utterance_counts, kocer=scoring.kocer)
    for alias, found in transcribe(models, rows, options, scorer).items():
        table, predictions, scored = score(rows, found, scoring)
        results[alias] = Result(table, predictions, found, speed(rows, found), scored)
    return results


def transcribe(
    models: dict[str, str | tuple], rows: list[dict], options: Options, scorer: Callable | None = None
) -> dict[str, Transcripts]:
    """Hypotheses of every model for `rows`, in manifest order, from one worker per device. A model
    is a path, decoded with `options.decoding`, or a (path, `inference.Decoding`) pair; a worker
    keeps a model loaded while the next one in order is the same path. With `scorer(row,
    hypothesis)` (a module-level function, or a partial of one), each worker also scores its own
    rows, so the scoring is spread as the decoding is (`Transcripts.counts`)."""
    if not rows:
        raise UserError("no utterances to transcribe")
    sources, processors = {}, {}
    for alias, model in models.items():
        path, decoding = model if isinstance(model, tuple) else (model, options.decoding)
        if path not in processors:  # a model decoded several ways is checked once
            processors[path] = _check(alias, path, options.processor_fallback)
        sources[alias] = (path, processors[path], decoding)
    devices = worker_devices(options.cpu_workers)
    batch_size = options.batch_size or (GPU_BATCH_SIZE if devices[0].startswith("cuda") else CPU_BATCH_SIZE)
    shards = plan(rows, batch_size, len(devices))
    with _Workers(sources, rows, shards, devices, options, scorer) as workers:
        found = workers.collect()
    for transcripts in found.values():
        transcripts.batch_size = batch_size
    return found


def _check(alias: str, path: str, processor_fallback: str | None) -> str:
    try:
        return inference.check(path, processor_fallback)
    except inference.ModelError as err:
        raise inference.ModelError(f"model {alias!r}: {err}") from err


def worker_devices(cpu_workers: int) -> list[str]:
    """One worker per GPU; without GPUs, `cpu_workers` single-threaded workers."""
    if runtime.cuda_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"] * max(1, cpu_workers)


def plan(rows: list[dict], batch_size: int, n_workers: int) -> list[list[list[int]]]:
    """Batches of manifest indices for each worker: longest first, dealt round-robin.

    Similar durations share a batch, so the decoder wastes few steps on hypotheses that have
    already ended; dealing sorted batches in turn gives every worker a similar mix of lengths, and
    the longest (most memory-hungry) batches run first, so an out-of-memory shows up at once.
    """
    order = sorted(range(len(rows)), key=lambda i: -rows[i]["duration"])
    # A multiple of the workers in batches, each no larger than batch_size: 48 utterances in batches
    # of 16 would give one of two workers twice the other's audio, and 8 calls in one batch, all.
    count = math.ceil(len(order) / batch_size)
    batch_size = math.ceil(len(order) / (math.ceil(count / n_workers) * n_workers))
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    n_workers = min(n_workers, len(batches))
    return [batches[w::n_workers] for w in range(n_workers)]


class _Workers:
    """The worker processes of one run, and the main process's view of where each one is."""

    def __init__(self, sources, rows, shards, devices, options, scorer):
        self.aliases, self.rows, self.shards, self.devices = list(sources), rows, shards, devices
        self.timeout = options.batch_timeout_s
        context = mp.get_context("spawn")  # CUDA cannot be used in a forked child
        self.queue = context.Queue()
        counts = [None] * len(rows) if scorer else []
        self.found = {alias: Transcripts([None] * len(rows), {}, counts=list(counts)) for alias in sources}
        self.processes = []
        with _single_threaded_children():
            for rank, shard in enumerate(shards):
                # (index, audio, duration, the row where the worker scores it): its own rows only
                batches = [
                    [(i, rows[i]["audio"], rows[i]["duration"], rows[i] if scorer else None) for i in batch]
                    for batch in shard
                ]
                process = context.Process(
                    target=_worker,
                    args=(rank, devices[rank], list(sources.values()), batches, options, self.queue, scorer),
                    name=f"benchmark-worker-{rank}",
                    daemon=True,
                )
                process.start()
                self.processes.append(process)
        # Per worker: (model index, batch index or None while loading), and when it last reported.
        self.position = [(0, None)] * len(shards)
        self.heard = [time.monotonic()] * len(shards)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        for process in self.processes:
            if exc_type is None:
                # A worker that sent its last result is exiting: killed now, it would leave what it
                # holds (tqdm's lock in faster-whisper) for the resource tracker to report as leaked.
                process.join(timeout=_EXIT_GRACE_S)
            if process.is_alive():
                process.kill()  # also ends a stopped process, which terminate() would not
            process.join()
        self.queue.close()

    def collect(self) -> dict[str, Transcripts]:
        busy = set(range(len(self.processes)))
        with tqdm(total=len(self.rows) * len(self.aliases), desc="benchmark", unit="utt") as bar:
            while busy:
                try:
                    message = self.queue.get(timeout=_POLL_S)
                except queue.Empty:
                    message = None
                if message:
                    self._handle(message, busy, bar)
                self._check(busy)
        return self.found

    def _handle(self, message: Ready | BatchDone | ModelDone | Failed, busy: set[int], bar: tqdm) -> None:
        rank = message.rank
        self.heard[rank] = time.monotonic()
        if isinstance(message, Failed):
            raise self._error(rank, message.message)
        found = self.found[self.aliases[message.model]]
        if isinstance(message, Ready):
            self.position[rank] = (message.model, 0)
        elif isinstance(message, BatchDone):
            for i, hypothesis in zip(self.shards[rank][message.batch], message.hypotheses, strict=True):
                found.hypotheses[i] = hypothesis
            found.errors.update(message.errors)
            for i, counts in zip(self.shards[rank][message.batch], message.counts or (), strict=False):
                found.counts[i] = counts
            self.position[rank] = (message.model, message.batch + 1)
            bar.set_postfix_str(self.aliases[message.model])
            bar.update(len(message.hypotheses))
        else:
            found.timings.append(message.timing)
            found.peak_rss_mb = max(found.peak_rss_mb, message.peak_rss_mb)
            found.attention, found.dtype = message.attention, message.dtype
            self.position[rank] = (message.model + 1, None)
            if message.model + 1 == len(self.aliases):
                busy.discard(rank)

    def _check(self, busy: set[int]) -> None:
        for rank in busy:
            process = self.processes[rank]
            # A worker flushes its messages before it exits, so if it is gone and nothing is
            # left to read, it died without reporting (killed, out of memory, segfault).
            if process.exitcode is not None and self.queue.empty():
                raise self._error(rank, f"died with exit code {process.exitcode}")
            silent = time.monotonic() - self.heard[rank]
            if silent > self.timeout:
                limit = f"benchmark.batch_timeout_s = {self.timeout:g}"
                raise self._error(rank, f"sent nothing for {silent:.0f} s ({limit})")

    def _error(self, rank: int, what: str) -> BenchmarkError:
        return BenchmarkError(f"benchmark worker {rank} ({self.devices[rank]}) at {self._where(rank)}: {what}")

    def _where(self, rank: int) -> str:
        model, batch = self.position[rank]
        alias = self.aliases[min(model, len(self.aliases) - 1)]
        shard = self.shards[rank]
        if batch is None:
            return f"model {alias!r}, while loading it"
        if batch == len(shard):
            return f"model {alias!r}, after its last batch"
        ids = [self.rows[i]["id"] for i in shard[batch]]
        more = f" and {len(ids) - 3} more" if len(ids) > 3 else ""
        return f"model {alias!r}, batch {batch + 1}/{len(shard)} of this worker ({', '.join(ids[:3])}{more})"


@contextmanager
def _single_threaded_children() -> Iterator[None]:
    # Spawned children read these when their libraries start: one process per device already
    # keeps the machine busy, and more threads per process only contend for the same cores.
    pinned = {
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    saved = {name: os.environ.get(name) for name in pinned}
    os.environ.update(pinned)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _worker(rank, device, models, batches, options, results, scorer) -> None:
    """Body of a worker process: every model in turn over this worker's batches."""
    try:
        _configure(device)
        cuda = device.startswith("cuda")
        audio_s = sum(item[2] for batch in batches for item in batch)
        model, loaded = None, None
        for model_index, (path, processor_path, decoding) in enumerate(models):
            if path != loaded:
                del model  # free one model before the next one loads
                model = inference.open_model(path, device, options.dtype, processor_path, options.attention)
                loaded = path
            results.put(Ready(rank, model_index))

            def prepare(batch, model=model, decoding=decoding):
                return model.prepare([item[1] for item in batch], decoding)

            def decode(prepared, model=model, decoding=decoding):
                return model.decode(prepared, decoding)

            def send(batch_index, prepared, hypotheses, model_index=model_index):
                batch = batches[batch_index]
                errors = {batch[i][0]: message for i, message in prepared.errors.items()}
                counts = None
                if scorer:
                    counts = [
                        None if h is None else scorer(item[3], h) for item, h in zip(batch, hypotheses, strict=True)
                    ]
                results.put(BatchDone(rank, model_index, batch_index, hypotheses, errors, counts))

            decode_s, wall_s = run_batches(
                batches,
                prepare,
                decode,
                send,
                warmup=options.warmup_batches,
                synchronize=(lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None),
            )
            timing = Timing(device, audio_s, decode_s, wall_s)
            results.put(ModelDone(rank, model_index, timing, _peak_rss_mb(), model.attention, model.dtype))
    except UserError as err:  # a model that cannot be scored: its message says why and what to do
        results.put(Failed(rank, str(err)))
    except BaseException:
        results.put(Failed(rank, f"raised:\n{traceback.format_exc()}"))


def run_batches(
    batches: list,
    prepare: Callable,
    decode: Callable,
    send: Callable,
    *,
    warmup: int = 0,
    synchronize: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, float]:
    """`send(i, prepared, decode(prepared))` for each batch in order, where `prepared = prepare(batch)`
    runs in a thread while the batch before is decoding; returns (decoding s, wall s).

    The first `warmup` batches are decoded once before, untimed, and their output discarded: the
    first calls pay for CUDA start-up and cuDNN autotuning, and on the longest batch at that.
    """
    for batch in batches[:warmup]:
        decode(prepare(batch))
    synchronize()
    decode_s, start = 0.0, clock()
    with ThreadPoolExecutor(max_workers=1) as reader:
        upcoming = reader.submit(prepare, batches[0]) if batches else None
        for index in range(len(batches)):
            prepared = upcoming.result()
            if index + 1 < len(batches):
                upcoming = reader.submit(prepare, batches[index + 1])
            began = clock()
            hypotheses = decode(prepared)
            synchronize()
            decode_s += clock() - began
            send(index, prepared, hypotheses)
    return decode_s, clock() - start


def _configure(device: str) -> None:
    transformers.utils.logging.disable_progress_bar()  # the main process shows the one bar
    torch.set_num_threads(1)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
        runtime.set_matmul_precision()
        torch.backends.cudnn.benchmark = True  # every input is 3000 frames: autotuning pays off once


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def score(rows: list[dict], found: Transcripts, scoring: Scoring) -> tuple[dict, list[dict], list[dict]]:
    """Metrics (overall, and per group of each `group_by` field), per-utterance predictions and
    per-utterance scores."""
    scored, predictions = [], []
    for i, row in enumerate(rows):
        hypothesis = found.hypotheses[i]
        groups = {name: row.get(name) for name in scoring.group_by}
        if hypothesis is None:
            scored.append({**groups, "error": found.errors[i]})
            predictions.append({**_prediction(row, None), "error": found.errors[i]})
            continue
        scores = found.counts[i] if found.counts else utterance_counts(row, hypothesis, scoring.kocer)
        scored.append({**scores, **groups, "duration": row["duration"]})
        predictions.append(
            {
                **_prediction(row, hypothesis),
                "cer": metrics.utterance_rate(scores),
                "cer_nospace": metrics.utterance_rate(scores, "nospace"),
            }
        )
    table = {"overall": metrics.aggregate(scored, resamples=scoring.resamples, seed=scoring.seed)}
    for name in scoring.group_by:
        table[f"by_{name}"] = metrics.by_group(scored, name, resamples=scoring.resamples, seed=scoring.seed)
    return table, predictions, scored


def utterance_counts(row: dict, hypothesis: str, kocer: bool = False) -> dict:
    """An utterance's edit counts (and reading-equivalence counts with `kocer`): what `score` sums."""
    counts = metrics.utterance_scores(row["text"], hypothesis)
    if kocer:
        counts.update(metrics.kocer_scores(row["raw_text"], hypothesis))
    return counts


def _prediction(row: dict, hypothesis: str | None) -> dict:
    return {
        "id": row["id"],
        "category": row.get("category"),
        "duration": row["duration"],
        "reference": row["text"],
        "raw_text": row.get("raw_text"),
        "hypothesis": hypothesis,
    }


def speed(rows: list[dict], found: Transcripts) -> dict:
    """Samples/s and RTFx of the node (over the slowest worker's wall time) and RTFx per device
    (audio over decoding time, summed over workers: the Open ASR Leaderboard's figure for one device).
    Model load and warm-up are excluded from both; peak memory is the largest worker's."""
    wall = max((t.wall_s for t in found.timings), default=0.0)
    decode = sum(t.decode_s for t in found.timings)
    audio_s = sum(row["duration"] for row in rows)
    return {
        "wall_s": round(wall, 2),
        "samples_per_s": round(len(rows) / wall, 2) if wall else 0.0,
        "rtfx": round(audio_s / wall, 2) if wall else 0.0,
        "rtfx_per_device": round(audio_s / decode, 2) if decode else 0.0,
        "worker_peak_rss_mb": round(found.peak_rss_mb),
    }
