"""Manifest → feature shards: decode, resample, unpadded log-mel, label ids; one worker per shard.

Workers write their own shards (no feature arrays cross process boundaries). A shard whose index
exists and whose fingerprint matches the current inputs and parameters is kept as it is, so a
killed run resumes; any change of parameters or manifest rewrites the shards it affects.

Training may add augmented copies (speed perturbation, noise), each kind in shards of its own
(`speed090-00000`, `noise-00000`) beside the originals' (`shard-00000`): a copy is a manifest row
with its own id and an `augment` entry, so turning a kind on or off writes or removes only its shards.
"""

import ctypes
import gc
import hashlib
import json
import os
import re
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from whisper_ko import audio, checks, features, labels, manifest, shards
from whisper_ko.checks import SHARD_FILE
from whisper_ko.config import Model, Preprocess
from whisper_ko.errors import UserError
from whisper_ko.ledger import Ledger

ORIGINALS = "shard"  # shard name prefix of the manifest's own utterances
NOISE = "noise"
NOISE_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def fingerprint(rows: list[dict], model: Model, config: Preprocess, n_mels: int) -> str:
    """What a shard's content depends on: its rows (augmentation included), the tokenizer and the
    feature settings."""
    settings = {**asdict(config), "model": [model.base, model.language, model.task]}
    # how the work is cut, and the augmentation each row carries itself, not what this shard makes
    for name in ("workers", "shard_size", "speed_perturb", "noise", "seed"):
        del settings[name]
    payload = json.dumps(
        {
            "rows": [(r["id"], r["audio"], r["text"], r.get("augment")) for r in rows],
            "settings": settings,
            "n_mels": n_mels,
        },
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


def _shard(job: tuple[Path, list[dict], str]) -> dict:
    """A planned shard's stats: a finished shard with these inputs is verified, record by record,
    and kept; a missing, other or corrupt one is written (`repaired` says why it was rewritten)."""
    path, rows, digest = job
    shard = shards.complete(path)
    problem = None
    if shard and shard.header.get("fingerprint") == digest:
        problem = shard.verify()
        if problem is None:
            return {**shard.header["stats"], "written": False}
    return {**_write_shard(path, rows, digest), "written": True, "repaired": problem}


def _write_shard(path: Path, rows: list[dict], digest: str) -> dict:
    config, n_mels, tokenizer = _worker["config"], _worker["n_mels"], _worker["tokenizer"]
    skipped: dict[str, list[str]] = defaultdict(list)
    silent = []  # kept clips of digital silence: a label with text over no sound is worth a look
    writer = shards.ShardWriter(path, n_mels, config.dtype, meta={"fingerprint": digest})
    seconds = 0.0
    for row, ids in zip(rows, labels.encode(tokenizer, [row["text"] for row in rows]), strict=True):
        reason = _skip_reason(row, config)
        if not reason and len(ids) > config.max_label_tokens:
            reason = "label_too_long"
        if not reason:
            try:
                wave = _load(row)
                silence = not np.any(wave)
                reason = "silent_audio" if silence and config.silent_audio == "skip" else None
                feats = None if reason else features.log_mel(wave, n_mels)  # checked finite
            except audio.AudioError as err:
                reason = err.reason
        if reason:
            skipped[reason].append(row["id"])
            continue
        if silence:
            silent.append(row["id"])
        writer.add(row["id"], feats, ids, len(wave) / audio.SAMPLE_RATE, row.get("category"))
        seconds += len(wave) / audio.SAMPLE_RATE
    writer.meta["stats"] = {
        "kept": len(writer),
        "seconds": seconds,
        "skipped": dict(skipped),
        "kept_silent": silent,
        "copy": path.name.rsplit("-", 1)[0],
    }
    writer.close()
    return writer.meta["stats"]


def _load(row: dict) -> np.ndarray:
    wave = audio.load(row["audio"])
    augment = row.get("augment") or {}
    if "speed" in augment:
        wave = audio.change_speed(wave, augment["speed"])
    if "noise" in augment:
        noise = audio.load(augment["noise"])
        wave = audio.mix_noise(wave, noise, augment["snr_db"], augment["offset"])
    return wave


def _skip_reason(row: dict, config: Preprocess) -> str | None:
    if row["duration"] < config.min_duration:
        return "audio_too_short"
    if row["duration"] > audio.CHUNK_LENGTH:
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


def training_copies(rows: list[dict], config: Preprocess) -> dict[str, list[dict]]:
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
# zstd keeps about 63% of fp16 log-mel bytes (README, "Feature storage": 36.3 against 57.9 MB per
# audio-hour); the disk check assumes a little more.
COMPRESSED_SHARE = 0.7


def read_manifests(directory: str | Path) -> dict[str, list[dict]]:
    """The train and val manifests; a missing or empty one is a one-line error (training needs both)."""
    found = {split: manifest.read_split(directory, split) for split in SPLITS}
    for split, rows in found.items():
        if not rows:
            raise UserError(
                f"{Path(directory) / split}.jsonl is empty: training needs {split} utterances; "
                "rerun discover (see its report)"
            )
    return found


def require_space(manifests: dict[str, list[dict]], out_dir: str | Path, model: Model, config: Preprocess) -> None:
    """The disk holding `out_dir` fits an estimate of the shards (less what is there already)."""
    rows = [*training_copies(manifests["train"], config).values(), manifests["val"]]
    seconds = sum(row["duration"] for group in rows for row in group)
    frames = seconds * audio.SAMPLE_RATE / audio.HOP_LENGTH
    needed = frames * features.n_mels(model.base) * np.dtype(shards.DTYPES[config.dtype]).itemsize * COMPRESSED_SHARE
    checks.require_space(out_dir, needed - checks.directory_size(out_dir), "paths.features", "the feature shards")


def preprocess_split(
    rows: list[dict], out_dir: str | Path, model: Model, config: Preprocess = Preprocess(), augment: bool = False
) -> dict:
    """Write the shards of one split into `out_dir`, with the augmented copies `config` asks for if
    `augment` (training only); returns the split's report (its `speed`: this run's work and rate)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_mels = features.n_mels(model.base)
    groups = training_copies(rows, config) if augment else {ORIGINALS: rows}
    jobs = []
    for name, group in groups.items():
        for i in range(0, len(group), config.shard_size):
            chunk = group[i : i + config.shard_size]
            path = out_dir / f"{name}-{i // config.shard_size:05d}"
            jobs.append((path, chunk, fingerprint(chunk, model, config, n_mels)))
    _remove_stale(out_dir, {path.name for path, _, _ in jobs})

    start = time.perf_counter()
    done, written, repaired = [], 0, []
    workers = max(1, min(config.workers or os.cpu_count() or 1, len(jobs)))
    bar = tqdm(total=sum(len(j[1]) for j in jobs), desc=f"preprocess {out_dir.name}", unit="clip")
    try:
        for stats in _run(jobs, workers, model, config, n_mels):
            bar.update(stats["kept"] + sum(map(len, stats["skipped"].values())))
            if stats.pop("written"):
                written += stats["kept"] + sum(map(len, stats["skipped"].values()))
            if why := stats.pop("repaired", None):
                repaired.append(why)
            done.append(stats)
    except OSError as err:  # a full disk or a lost mount while writing: say where, not a traceback
        raise UserError(
            f"writing feature shards in {out_dir} failed: {err}; free space or fix the disk, then rerun"
        ) from err
    bar.close()
    elapsed = time.perf_counter() - start
    planned = {name: len(group) for name, group in groups.items()}
    report = _split_report(out_dir, done, planned, written, elapsed, n_mels, config)
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


def _split_report(out_dir, stats, planned: dict[str, int], n_processed, elapsed, n_mels, config: Preprocess) -> dict:
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
    copies = {name: n for name, n in planned.items() if name != ORIGINALS}
    kept_copies = Counter()
    for s in stats:
        kept_copies[s["copy"]] += s["kept"]
    return {
        "manifest": planned[ORIGINALS],
        # augmented training copies planned and kept, per kind (their skips are in `skipped`, by id)
        "copies": {name: {"planned": n, "kept": kept_copies[name]} for name, n in copies.items()},
        "kept": kept,
        "skipped": skipped.as_dict(),
        "kept_but_flagged": flagged.as_dict(),  # silent_audio: digital silence under a label with text
        "hours": round(hours, 4),
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
