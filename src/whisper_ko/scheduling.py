"""Decoding the test manifest with every model: one worker process per device, results streamed back.

The main process plans the work (utterances sorted by duration, cut into batches, dealt
round-robin to the workers) and then only collects. Each worker loads one model at a time, reads
and featurises the audio of one batch at a time (the next one in a thread while the current one
decodes), and sends the hypotheses back through a queue, so its memory depends on the batch size,
never on the size of the test set. A worker that raises, dies or stays silent for
`batch_timeout_s` ends the run with an error naming the model and batch. A worker keeps a model
loaded across its decodings (with and without the loop guards, utterances and whole calls).

Speed is measured as the Open ASR Leaderboard measures it: warm-up batches first, untimed (CUDA
start-up, cuDNN autotuning, allocator growth), then RTFx = audio seconds / decoding seconds per
device, beside the node's figure over the slowest worker's wall time (`scoring.speed`).
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
from dataclasses import dataclass, field

import torch
import transformers
from tqdm import tqdm

from whisper_ko import config, inference, runtime
from whisper_ko.errors import UserError

# How often the main process looks at its workers while waiting for results.
POLL_S = 1.0


EXIT_GRACE_S = 30.0  # how long a worker that finished may take to exit before it is killed


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
            processors[path] = check_model(alias, path, options.processor_fallback)
        sources[alias] = (path, processors[path], decoding)
    devices = worker_devices(options.cpu_workers)
    batch_size = options.batch_size or (GPU_BATCH_SIZE if devices[0].startswith("cuda") else CPU_BATCH_SIZE)
    shards = plan(rows, batch_size, len(devices))
    with Workers(sources, rows, shards, devices, options, scorer) as workers:
        found = workers.collect()
    for transcripts in found.values():
        transcripts.batch_size = batch_size
    return found


def check_model(alias: str, path: str, processor_fallback: str | None) -> str:
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


class Workers:
    """The worker processes of one run, and the main process's view of where each one is."""

    def __init__(self, sources, rows, shards, devices, options, scorer):
        self.aliases, self.rows, self.shards, self.devices = list(sources), rows, shards, devices
        self.timeout = options.batch_timeout_s
        context = mp.get_context("spawn")  # CUDA cannot be used in a forked child
        self.queue = context.Queue()
        counts = [None] * len(rows) if scorer else []
        self.found = {alias: Transcripts([None] * len(rows), {}, counts=list(counts)) for alias in sources}
        self.processes = []
        with single_threaded_children():
            for rank, shard in enumerate(shards):
                # (index, audio, duration, the row where the worker scores it): its own rows only
                batches = [
                    [(i, rows[i]["audio"], rows[i]["duration"], rows[i] if scorer else None) for i in batch]
                    for batch in shard
                ]
                process = context.Process(
                    target=worker,
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
                process.join(timeout=EXIT_GRACE_S)
            if process.is_alive():
                process.kill()  # also ends a stopped process, which terminate() would not
            process.join()
        self.queue.close()

    def collect(self) -> dict[str, Transcripts]:
        busy = set(range(len(self.processes)))
        with tqdm(total=len(self.rows) * len(self.aliases), desc="benchmark", unit="utt") as bar:
            while busy:
                try:
                    message = self.queue.get(timeout=POLL_S)
                except queue.Empty:
                    message = None
                if message:
                    self.handle(message, busy, bar)
                self.check_alive(busy)
        return self.found

    def handle(self, message: Ready | BatchDone | ModelDone | Failed, busy: set[int], bar: tqdm) -> None:
        rank = message.rank
        self.heard[rank] = time.monotonic()
        if isinstance(message, Failed):
            raise self.error(rank, message.message)
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

    def check_alive(self, busy: set[int]) -> None:
        for rank in busy:
            process = self.processes[rank]
            # A worker flushes its messages before it exits, so if it is gone and nothing is
            # left to read, it died without reporting (killed, out of memory, segfault).
            if process.exitcode is not None and self.queue.empty():
                raise self.error(rank, f"died with exit code {process.exitcode}")
            silent = time.monotonic() - self.heard[rank]
            if silent > self.timeout:
                limit = f"benchmark.batch_timeout_s = {self.timeout:g}"
                raise self.error(rank, f"sent nothing for {silent:.0f} s ({limit})")

    def error(self, rank: int, what: str) -> BenchmarkError:
        return BenchmarkError(f"benchmark worker {rank} ({self.devices[rank]}) at {self.where(rank)}: {what}")

    def where(self, rank: int) -> str:
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
def single_threaded_children() -> Iterator[None]:
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


def worker(rank, device, models, batches, options, results, scorer) -> None:
    """Body of a worker process: every model in turn over this worker's batches."""
    try:
        configure(device)
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
            results.put(ModelDone(rank, model_index, timing, peak_rss_mb(), model.attention, model.dtype))
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


def configure(device: str) -> None:
    transformers.utils.logging.disable_progress_bar()  # the main process shows the one bar
    torch.set_num_threads(1)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
        runtime.set_matmul_precision()
        torch.backends.cudnn.benchmark = True  # every input is 3000 frames: autotuning pays off once


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
