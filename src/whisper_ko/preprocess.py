"""Manifest → feature shards: decode, resample, unpadded log-mel, label ids; one worker per shard.

Workers write their own shards (no feature arrays cross process boundaries). A shard whose index
exists and whose fingerprint matches the current inputs and parameters is kept as it is, so a
killed run resumes; any change of parameters or manifest rewrites the shards it affects.

Training may add augmented copies (speed perturbation, noise), each kind in shards of its own
(`speed090-00000`, `noise-00000`) beside the originals' (`shard-00000`): a copy is a manifest row
with its own id and an `augment` entry, so turning a kind on or off writes or removes only its shards.

With `pack.by`, each kind's training utterances are packed into 30 s windows (`packing`), in shards
of their own (`pack-00000`, `packspeed090-00000`), beside the share kept as single utterances.
Val stays single utterances: selection is scored on what users decode.
"""

import ctypes
import gc
import hashlib
import itertools
import json
import os
import re
import time
from collections import Counter, defaultdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from whisper_ko import audio, checks, dims, features, labels, manifest, packing, shards
from whisper_ko.checks import SHARD_FILE
from whisper_ko.config import Model, Preprocess
from whisper_ko.errors import UserError
from whisper_ko.ledger import Ledger
from whisper_ko.manifest import Utterance

ORIGINALS = "shard"  # shard name prefix of the manifest's own utterances
PACKED = "pack"  # prefix of packed windows' shards: `pack` (the originals), `packspeed090`, `packnoise`
NOISE = "noise"
NOISE_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def fingerprint(windows: list[packing.Window], model: Model, config: Preprocess, n_mels: int) -> str:
    """What a shard's content depends on: its windows (their utterances, augmentation, gaps and
    labelling), the tokenizer and the feature settings."""
    settings = {**config.model_dump(), "model": [model.base, model.language, model.task]}
    # how the work is cut, and what each window carries itself, not what this shard makes
    for name in ("workers", "shard_size", "speed_perturb", "noise", "pack", "seed"):
        del settings[name]
    payload = json.dumps(
        {"windows": [w.key() for w in windows], "settings": settings, "n_mels": n_mels},
        ensure_ascii=False,
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3

# Per-worker state, set once by the pool initializer.
_worker: dict = {}


def _init_pool_worker(model: Model, config: Preprocess, n_mels: int) -> None:
    _avoid_page_faults()
    _init_worker(model, config, n_mels)


def _avoid_page_faults() -> None:
    """Stop a forked worker from page-faulting its way through every clip (a quarter of its CPU).

    The collector's full passes write to every object inherited from the forkserver, copying
    those pages; frozen objects are never traversed. glibc hands each large freed array (frames,
    spectrum, about 1 MB a clip) back to the kernel and faults it in again for the next clip;
    raised thresholds keep it in the heap. Measured: 48 → 11 page faults and 3.2 → 2.2 ms per clip.
    """
    gc.freeze()
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # glibc; elsewhere the defaults stay
    if mallopt:
        mallopt(_M_MMAP_THRESHOLD, 64 << 20)
        mallopt(_M_TRIM_THRESHOLD, 256 << 20)


def _init_worker(model: Model, config: Preprocess, n_mels: int) -> None:
    # One thread per worker: processes, not threads, provide the parallelism.
    torch.set_num_threads(1)
    _worker.update(
        config=config, n_mels=n_mels, tokenizer=labels.load_tokenizer(model.base, model.language, model.task)
    )


def _shard(job: tuple[Path, list[packing.Window], str]) -> dict:
    """A planned shard's stats: a finished shard with these inputs is verified, record by record,
    and kept; a missing, other or corrupt one is written (`repaired` says why it was rewritten)."""
    path, windows, digest = job
    shard = shards.complete(path)
    problem = None
    if shard and shard.header.get("fingerprint") == digest:
        problem = shard.verify()
        if problem is None:
            return {**shard.header["stats"], "written": False}
    return {**_write_shard(path, windows, digest), "written": True, "repaired": problem}


def _write_shard(path: Path, windows: list[packing.Window], digest: str) -> dict:
    config, tokenizer = _worker["config"], _worker["tokenizer"]
    texts = iter(labels.tokens(tokenizer, [part["text"] for w in windows for part in w.parts]))
    writer = shards.ShardWriter(path, _worker["n_mels"], config.dtype, meta={"fingerprint": digest})
    stats = Stats(path.name.rsplit("-", 1)[0])
    for window in windows:
        usable = []
        for part in window.parts:
            text = next(texts)
            wave = _usable(part, text, window.timestamps, config, stats)
            if wave is not None:
                usable.append((part, wave, text))
        for piece in _pieces(window, usable, config.max_label_tokens):
            _write_window(writer, window, piece, stats)
    writer.meta["stats"] = stats.as_dict(len(writer))
    writer.close()
    return writer.meta["stats"]


class Stats:
    """What a shard's writing kept and skipped, per utterance, and the shape of its packed windows."""

    def __init__(self, copy: str):
        self.copy = copy
        self.kept, self.seconds = 0, 0.0
        self.skipped: dict[str, list[str]] = defaultdict(list)
        self.silent: list[str] = []  # kept clips of digital silence: a label with text over no sound is worth a look
        self.windows = Counter()  # packed windows: count, utterances, speech and window seconds, tokens, ...
        self.sizes = Counter()  # packed windows by utterances held

    def as_dict(self, records: int) -> dict:
        return {
            "kept": self.kept,
            "records": records,
            "seconds": self.seconds,
            "skipped": dict(self.skipped),
            "kept_silent": self.silent,
            "copy": self.copy,
            "windows": dict(self.windows),
            "window_sizes": {str(n): count for n, count in sorted(self.sizes.items())},
        }


def _usable(part: dict, text: labels.Text, timestamped: bool, config: Preprocess, stats: Stats) -> np.ndarray | None:
    """The utterance's audio, or None with its skip recorded."""
    reason = _skip_reason(part, config)
    if not reason and labels.window_length([text], timestamped) > config.max_label_tokens:
        reason = "label_too_long"
    wave = None
    if not reason:
        try:
            wave = _load(part)
            if not np.any(wave):
                if config.silent_audio == "skip":
                    reason = "silent_audio"
                else:
                    stats.silent.append(part["id"])
        except audio.AudioError as err:
            reason = err.reason
    if reason:
        stats.skipped[reason].append(part["id"])
        return None
    return wave


def _pieces(window: packing.Window, usable: list, max_tokens: int) -> list[list]:
    """The usable parts as windows that fit (`packing.fit`), each part with the gap after it; a
    skipped part leaves no hole (the gap after the part before it stays)."""
    if not usable:
        return []
    gap_after = dict(zip((p["id"] for p in window.parts), window.gaps, strict=False))
    gaps = [gap_after[part["id"]] for part, _, _ in usable[:-1]]
    extra = 2 * window.timestamps  # a part's start and end timestamps
    starts = packing.fit(
        [len(wave) for _, wave, _ in usable],
        [len(text.first) + extra for _, _, text in usable],
        [len(text.later) + extra for _, _, text in usable],
        gaps,
        window.max_s,
        max_tokens - labels.window_length([], window.timestamps),
    )
    bounds = [*starts, len(usable)]
    return [
        [(*usable[i], gaps[i] if i < len(gaps) else 0.0) for i in range(lo, hi)]
        for lo, hi in itertools.pairwise(bounds)
    ]


def _write_window(writer: shards.ShardWriter, window: packing.Window, piece: list, stats: Stats) -> None:
    """One record: the piece's concatenated audio, its features and labels. Features that are not
    finite skip the parts that make them so, and the rest is written without them."""
    n_mels, tokenizer = _worker["n_mels"], _worker["tokenizer"]
    parts = [part for part, _, _, _ in piece]
    wave, spans = packing.concatenate([w for _, w, _, _ in piece], [gap for *_, gap in piece[:-1]])
    try:
        feats = features.log_mel(wave, n_mels)  # checked finite
    except audio.AudioError as err:
        # rare: the parts whose own features overflow are skipped and the others written; if none
        # does alone, none of the window's is written
        bad = [i for i, (_, w, _, _) in enumerate(piece) if len(piece) > 1 and not _finite_features(w, n_mels)]
        bad = bad or list(range(len(piece)))
        for i in bad:
            stats.skipped[err.reason].append(parts[i]["id"])
        rest = [p for i, p in enumerate(piece) if i not in bad]
        if rest:
            _write_window(writer, window, rest, stats)
        return
    texts = [text for _, _, text, _ in piece]
    ids = labels.window_ids(tokenizer, texts, spans if window.timestamps else None)
    record = packing.Window(tuple(parts), packed=window.packed)
    seconds = sum(len(w) for _, w, _, _ in piece) / dims.SAMPLE_RATE
    writer.add(record.id, feats, ids, len(wave) / dims.SAMPLE_RATE, parts[0].get("category"), len(parts))
    stats.kept += len(parts)
    stats.seconds += seconds
    if window.packed:
        stats.windows.update(
            count=1,
            utterances=len(parts),
            speech_s=seconds,
            window_s=len(wave) / dims.SAMPLE_RATE,
            tokens=len(ids),
            timestamped=int(window.timestamps),
        )
        stats.windows["tokens_max"] = max(stats.windows["tokens_max"], len(ids))
        stats.sizes[len(parts)] += 1


def _finite_features(wave: np.ndarray, n_mels: int) -> bool:
    try:
        features.log_mel(wave, n_mels)
    except audio.AudioError:
        return False
    return True


def _load(row: Utterance) -> np.ndarray:
    wave = audio.load(row["audio"])
    augment = row.get("augment") or {}
    if "speed" in augment:
        wave = audio.change_speed(wave, augment["speed"])
    if "noise" in augment:
        noise = audio.load(augment["noise"])
        wave = audio.mix_noise(wave, noise, augment["snr_db"], augment["offset"])
    return wave


def _skip_reason(row: Utterance, config: Preprocess) -> str | None:
    if row["duration"] < config.min_duration:
        return "audio_too_short"
    if row["duration"] > dims.CHUNK_LENGTH:
        return "audio_too_long"
    return None


def noise_files(root: str | Path) -> list[str]:
    """The noise recordings under `root`, sorted; a missing or empty folder is a params error."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"preprocess.noise.root {root}: not a directory; point it at a folder of noise recordings")
    found = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in NOISE_SUFFIXES and p.is_file())
    if not found:
        raise UserError(f"preprocess.noise.root {root}: no {'/'.join(NOISE_SUFFIXES)} file found under it")
    return found


def training_copies(rows: list[Utterance], config: Preprocess) -> dict[str, list[Utterance]]:
    """The rows to write for training, by shard name prefix: the originals, a copy per speed
    factor, and noisy copies of a seeded share (each choice seeded by the utterance's id, so a
    row's copy does not change when other rows come or go)."""
    groups = {ORIGINALS: rows}
    for factor in config.speed_perturb:
        groups[f"speed{round(factor * 100):03d}"] = [
            {
                **row,
                "id": f"{row['id']}{shards.COPY_MARK}speed{factor:g}",
                "duration": row["duration"] / factor,
                "augment": {"speed": factor},
            }
            for row in rows
        ]
    if config.noise.root:
        files = noise_files(config.noise.root)
        low, high = config.noise.snr_db
        groups[NOISE] = []
        for row in rows:
            digest = hashlib.blake2b(f"{config.seed}/{row['id']}".encode(), digest_size=8).digest()
            rng = np.random.default_rng(int.from_bytes(digest))
            if rng.random() >= config.noise.share:
                continue
            augment = {
                "noise": files[rng.integers(len(files))],
                "snr_db": round(float(rng.uniform(low, high)), 2),
                "offset": round(float(rng.random()), 4),
            }
            groups[NOISE].append({**row, "id": f"{row['id']}{shards.COPY_MARK}{NOISE}", "augment": augment})
    return groups


SPLITS = ("train", "val")  # what training reads; the test split is scored from audio
ROW_FIELDS = ("id", "audio", "duration", "text", "category", "session")  # all that preprocessing reads of a row
# zstd keeps about 63% of fp16 log-mel bytes (docs/features.md: 36.3 against 57.9 MB per
# audio-hour); the disk check assumes a little more.
COMPRESSED_SHARE = 0.7


def read_manifests(directory: str | Path) -> dict[str, list[Utterance]]:
    """The train and val manifests; a missing or empty one is a one-line error (training needs both)."""
    found = {split: manifest.read_split(directory, split, ROW_FIELDS) for split in SPLITS}
    for split, rows in found.items():
        if not rows:
            raise UserError(
                f"{Path(directory) / split}.jsonl is empty: training needs {split} utterances; "
                "rerun discover (see its report)"
            )
    return found


def plan(rows: list[Utterance], config: Preprocess, augment: bool = False) -> dict[str, list[packing.Window]]:
    """The records of a split by shard name prefix: with `augment` (training), each kind of
    training copy's (`training_copies`), packed into windows if `config.pack.by` (names prefixed
    `pack`) beside the seeded share kept single; without it, one utterance per record."""
    kinds = training_copies(rows, config) if augment else {ORIGINALS: rows}
    records = {}
    for kind, group in kinds.items():
        if not (augment and config.pack.by):
            records[kind] = [packing.single(row) for row in group]
            continue
        records[PACKED + ("" if kind == ORIGINALS else kind)] = packing.windows(group, config.pack, config.seed)
        records[kind] = packing.singles(group, config.pack.single, config.seed)
    return records


def copy_kind(name: str) -> str:
    """The training copy a shard name prefix holds: `shard` (the originals), `speed090`, `noise`."""
    return name.removeprefix(PACKED) or ORIGINALS


def require_space(manifests: dict[str, list[Utterance]], out_dir: str | Path, model: Model, config: Preprocess) -> None:
    """The disk holding `out_dir` fits an estimate of the shards (less what is there already)."""
    records = [*plan(manifests["train"], config, augment=True).values(), plan(manifests["val"], config)[ORIGINALS]]
    seconds = sum(window.duration for group in records for window in group)
    frames = seconds * dims.SAMPLE_RATE / dims.HOP_LENGTH
    needed = frames * features.n_mels(model.base) * np.dtype(shards.DTYPES[config.dtype]).itemsize * COMPRESSED_SHARE
    checks.require_space(out_dir, needed - checks.directory_size(out_dir), "paths.features", "the feature shards")


def preprocess_split(
    rows: list[Utterance], out_dir: str | Path, model: Model, config: Preprocess = Preprocess(), augment: bool = False
) -> dict:
    """Write the shards of one split into `out_dir`, with the augmented copies and packed windows
    `config` asks for if `augment` (training only); returns the split's report (its `speed`: this
    run's work and rate)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_mels = features.n_mels(model.base)
    records = plan(rows, config, augment)
    jobs = []
    for name, group in records.items():
        for i in range(0, len(group), config.shard_size):
            chunk = group[i : i + config.shard_size]
            path = out_dir / f"{name}-{i // config.shard_size:05d}"
            jobs.append((path, chunk, fingerprint(chunk, model, config, n_mels)))
    _remove_stale(out_dir, {path.name for path, _, _ in jobs})

    start = time.perf_counter()
    done, written, repaired = [], 0, []
    workers = max(1, min(config.workers or os.cpu_count() or 1, len(jobs)))
    bar = tqdm(total=sum(len(w.parts) for j in jobs for w in j[1]), desc=f"preprocess {out_dir.name}", unit="clip")
    try:
        for stats in _run(jobs, workers, model, config, n_mels):
            utterances = stats["kept"] + sum(map(len, stats["skipped"].values()))
            bar.update(utterances)
            if stats.pop("written"):
                written += utterances
            if why := stats.pop("repaired", None):
                repaired.append(why)
            done.append(stats)
    except OSError as err:  # a full disk or a lost mount while writing: say where, not a traceback
        raise UserError(
            f"writing feature shards in {out_dir} failed: {err}; free space or fix the disk, then rerun"
        ) from err
    bar.close()
    elapsed = time.perf_counter() - start
    planned = {name: sum(len(w.parts) for w in group) for name, group in records.items()}
    report = _split_report(out_dir, done, len(rows), planned, written, elapsed, n_mels, config)
    report["speed"]["repaired"] = repaired
    return report


def _run(jobs: list, workers: int, model: Model, config: Preprocess, n_mels: int):
    """Shard stats as shards complete: in this process for one worker, else in a pool."""
    if workers == 1:
        threads = torch.get_num_threads()
        try:
            _init_worker(model, config, n_mels)
            yield from map(_shard, jobs)
        finally:
            torch.set_num_threads(threads)
        return
    # Workers fork from a server that imported torch and transformers once: spawning each worker
    # cost ~3 s of CPU in imports, more than a 500-clip shard's real work.
    context = get_context("forkserver")
    context.set_forkserver_preload(["whisper_ko.preprocess"])
    with context.Pool(workers, _init_pool_worker, (model, config, n_mels)) as pool:
        yield from pool.imap_unordered(_shard, jobs)


def _remove_stale(out_dir: Path, wanted: set[str]) -> None:
    """Shards no longer planned, and what killed writers left half written: only files named as
    shards are (the stage refused a feature folder holding anything else before it began)."""
    for path in out_dir.iterdir():
        if re.fullmatch(SHARD_FILE, path.name) and (
            path.name.split(".")[0] not in wanted or path.name.endswith(shards.PARTIAL)
        ):
            path.unlink()


def _split_report(out_dir, stats, manifest_rows, planned: dict[str, int], n_processed, elapsed, n_mels, config) -> dict:
    """The split's report; `planned`: utterances per shard name prefix (found = kept + skipped holds
    for each, a packed window counting each of its utterances)."""
    skipped, flagged = Ledger(), Ledger()
    for s in stats:
        for reason, ids in s["skipped"].items():
            for uid in ids:
                skipped.add(reason, uid)
        for uid in s["kept_silent"]:
            flagged.add("silent_audio", uid)
    kept = sum(s["kept"] for s in stats)
    hours = sum(s["seconds"] for s in stats) / 3600
    size = sum(p.stat().st_size for p in out_dir.iterdir())
    if kept + skipped.total() != sum(planned.values()):
        raise AssertionError(f"preprocess lost utterances in {out_dir}")
    kept_by = Counter()
    for s in stats:
        kept_by[s["copy"]] += s["kept"]
    copies = Counter()
    for name, n in planned.items():
        copies[copy_kind(name)] += n
    report = {
        "manifest": manifest_rows,
        # augmented training copies planned and kept, per kind (their skips are in `skipped`, by id)
        "copies": {
            kind: {"planned": n, "kept": sum(k for name, k in kept_by.items() if copy_kind(name) == kind)}
            for kind, n in copies.items()
            if kind != ORIGINALS
        },
        "kept": kept,  # utterances, in all records: one packed and once single counts twice
        "records": sum(s["records"] for s in stats),
        "skipped": skipped.as_dict(),
        "kept_but_flagged": flagged.as_dict(),  # silent_audio: digital silence under a label with text
        "hours": round(hours, 4),  # of speech
        "bytes": size,
        "bytes_per_hour": round(size / hours) if hours else None,
        "n_mels": n_mels,
        "dtype": config.dtype,
        # What this run did and how fast: it varies from run to run (a rerun reuses finished shards),
        # so the stage keeps it apart from the report, which DVC hashes.
        "speed": {
            "processed_now": n_processed,
            "clips_per_s": round(n_processed / elapsed, 1) if n_processed and elapsed else None,
        },
    }
    if any(name.startswith(PACKED) for name in planned):
        report["windows"] = window_report(stats, planned)
    return report


def window_report(stats: list[dict], planned: dict[str, int]) -> dict:
    """The packed windows: how many, how full, how long their labels; the single share beside them."""
    total, sizes = Counter(), Counter()
    tokens_max = 0
    for s in stats:
        total.update({k: v for k, v in s["windows"].items() if k != "tokens_max"})
        tokens_max = max(tokens_max, s["windows"].get("tokens_max", 0))
        sizes.update(s["window_sizes"])
    count = total["count"]
    single = sum(n for name, n in planned.items() if not name.startswith(PACKED))
    return {
        "count": count,
        "timestamped": total["timestamped"],
        "utterances": total["utterances"],
        "utterances_per_window": round(total["utterances"] / count, 3) if count else None,
        "by_utterances": {n: sizes[n] for n in sorted(sizes, key=int)},  # windows holding n utterances
        "speech_fill": round(total["speech_s"] / total["window_s"], 4) if count else None,  # speech s / window s
        "window_s_mean": round(total["window_s"] / count, 3) if count else None,
        "tokens_per_window": round(total["tokens"] / count, 1) if count else None,
        "tokens_max": tokens_max,
        "single_planned": single,  # utterances also trained as windows of their own (pack.single)
    }
