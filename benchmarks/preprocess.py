"""preprocess throughput, storage and exactness: the reference approach beside our stage, same workers.

Clips: 8 kHz 16-bit telephone WAVs of realistic lengths. By default --clips clips are cut from the
corpus's kept utterances (cycled) at lengths drawn from a gamma distribution with mean
--mean-duration (AI Hub's telephone set: 4.58 s), tiled when a source is shorter, and written once
into --workdir; --mean-duration 0 takes the corpus clips as they are, listed again under new ids.

Then, in one run, for 80 and for 128 mels:
  (a) the reference approach, reimplemented faithfully (`reference_chunk`): per chunk of 500 clips, in a
      spawn Pool with --workers processes, load the extractor and tokenizer, then per clip
      `librosa.load(path, sr=16000, res_type="kaiser_fast")`, `WhisperFeatureExtractor(...)` on
      the audio padded to 30 s, `.astype(float16)`, the raw label tokenised; the chunk's numpy
      arrays go into `datasets.Dataset.from_dict(...)` (a List(List(float16)) column) and
      `save_to_disk(chunk_i)`. librosa is not installed here: the load is soundfile, then soxr HQ
      (default; favours the seed: resampy's kaiser_fast costs ~13 ms per 4.6 s clip, soxr ~0.4 ms)
      or, with --seed-resampler resampy, the reference approach's own kaiser_fast through resampy;
  (b) our stage: `whisper_ko.preprocess.preprocess_split` exactly as `whisper-ko preprocess` calls it.
Both are timed in wall time and in CPU time (the parent's plus every pool worker's): clips per
CPU-second is the per-core throughput, and stays meaningful on a machine shared with other
work, where wall time does not. Each approach also runs on one clip per worker: that is
its startup (spawn, imports, extractor/tokenizer loading). Steady clips per CPU-second =
(clips - workers) / (CPU - startup CPU) is the per-core rate a corpus of millions of clips sees,
startup amortised; chunk and shard sizes are capped at clips / workers so that every worker pays
its startup in the full run as in the startup run. Each figure is the best of --repeats runs,
the approaches interleaved. Bytes on disk: every file each approach writes, per hour of audio.
Exactness: `features.pad` of the features read back with `whisper_ko.shards.open` against
`WhisperFeatureExtractor` on the same 16 kHz audio (`whisper_ko.audio.load`), for --check-clips
clips stored in fp16 (the default) and again stored in fp32.
Targets: steady per-core throughput >= 10x the reference approach's, >= 10x fewer bytes per audio-hour,
max |diff| <= 1e-4 (fp32 storage) and <= 2e-3 (fp16 storage).

    python benchmarks/preprocess.py --clips 2000 --workers 2
"""

import importlib.util
import json
import os
import resource
import shutil
import time
from multiprocessing import forkserver, get_context
from pathlib import Path

import click
import numpy as np
import soundfile as sf
import soxr

# As the reference script does at import: no library threads, the processes are the parallelism.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

TARGET_SR = 16000
REFERENCE_CHUNK = 500
TARGETS = {"speed": 10.0, "size": 10.0, "fp32": 1e-4, "fp16": 2e-3}


# ---------------------------------------------------------------- (a) the reference approach, reimplemented


def librosa_load_stand_in(path: str, sr: int, resampler: str = "soxr") -> np.ndarray:
    """`librosa.load(path, sr=sr, res_type="kaiser_fast")`: mono float32 at sr, resampled with soxr HQ
    (faster than the seed), or with resampy's kaiser_fast as librosa does, where resampy is importable."""
    audio, native_sr = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if native_sr == sr:
        return audio
    if resampler == "resampy":
        import resampy

        return resampy.resample(audio, native_sr, sr, filter="kaiser_fast", axis=-1)
    return soxr.resample(audio, native_sr, sr, quality="HQ")


def reference_chunk(args: tuple) -> dict:
    """One chunk as the reference approach's worker does it: features and labels in memory, then one Dataset."""
    from datasets import Dataset
    from transformers import WhisperFeatureExtractor, WhisperTokenizer

    file_list, output_dir, chunk_id, model_name, target_sr, use_fp16, resampler = args
    feature_extractor = WhisperFeatureExtractor.from_pretrained(model_name)
    tokenizer = WhisperTokenizer.from_pretrained(model_name, language="ko", task="transcribe")
    successful, errors, total_duration = [], 0, 0.0
    for file_path, transcription, file_id in file_list:
        try:
            audio = librosa_load_stand_in(file_path, target_sr, resampler)
            if len(audio) < 1600:
                continue
            input_features = feature_extractor(audio, sampling_rate=target_sr, return_tensors="np").input_features[0]
            if use_fp16:
                input_features = input_features.astype(np.float16)
            labels = tokenizer(transcription).input_ids
            duration = len(audio) / target_sr
            total_duration += duration
            successful.append(
                {"input_features": input_features, "labels": labels, "file_id": file_id, "duration": duration}
            )
        except Exception:  # the reference approach counts and moves on
            errors += 1
    if successful:
        dataset = Dataset.from_dict({key: [d[key] for d in successful] for key in successful[0]})
        dataset.save_to_disk(str(Path(output_dir) / f"chunk_{chunk_id:06d}"))
    return {"successful": len(successful), "errors": errors, "duration": total_duration}


def run_reference(rows: list[dict], out: Path, model: str, workers: int, chunk_size: int, resampler: str) -> dict:
    files = [(r["audio"], r["raw_text"], r["id"]) for r in rows]
    chunks = [
        (files[i : i + chunk_size], str(out), k, model, TARGET_SR, True, resampler)
        for k, i in enumerate(range(0, len(files), chunk_size))
    ]
    with get_context("spawn").Pool(workers) as pool:
        results = list(pool.imap_unordered(reference_chunk, chunks))
    return {"kept": sum(r["successful"] for r in results), "errors": sum(r["errors"] for r in results)}


# ---------------------------------------------------------------- (b) our stage


def run_ours(rows: list[dict], out: Path, model: str, workers: int, shard_size: int, dtype: str = "float16") -> dict:
    from whisper_ko.config import Model, Preprocess
    from whisper_ko.preprocess import preprocess_split

    return preprocess_split(
        rows, out, Model(base=model), Preprocess(dtype=dtype, shard_size=shard_size, workers=workers)
    )


# ---------------------------------------------------------------- clips, timing, checks


def make_clips(corpus: Path, n: int, mean_duration: float, clip_dir: Path, workers: int) -> list[dict]:
    """Manifest rows for n clips cut from the corpus's kept utterances (see the module docstring)."""
    from whisper_ko.config import Discover
    from whisper_ko.discover import discover

    marker = clip_dir / "clips.json"
    params = {"corpus": str(corpus.resolve()), "n": n, "mean_duration": mean_duration}
    if marker.exists():
        saved = json.loads(marker.read_text())
        if saved["params"] == params:
            return saved["rows"]
    splits, _ = discover(Discover(root=str(corpus), workers=workers))
    sources = sorted((r for rows in splits.values() for r in rows), key=lambda r: r["id"])
    if not sources:
        raise click.UsageError(f"{corpus}: no usable utterances")
    shutil.rmtree(clip_dir, ignore_errors=True)
    clip_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        src = sources[i % len(sources)]
        row = {key: src[key] for key in ("audio", "duration", "category", "raw_text", "text")}
        row["id"] = f"clip{i:06d}/{src['id']}"
        if mean_duration > 0:
            pcm, sr = sf.read(src["audio"], dtype="int16", always_2d=True)
            seconds = float(np.clip(rng.gamma(4.0, mean_duration / 4.0), 0.5, 30.0))
            path = clip_dir / f"{i:06d}.wav"
            sf.write(path, np.resize(pcm[:, 0], round(seconds * sr)), sr, subtype="PCM_16")
            row.update(audio=str(path), duration=round(seconds * sr) / sr)
        rows.append(row)
    marker.write_text(json.dumps({"params": params, "rows": rows}, ensure_ascii=False))
    return rows


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cpu_seconds() -> float:
    """CPU time of this process, its reaped children (the reference approach's spawn pool) and the forkserver
    our stage's workers fork from (they are its children, so their time is in its cutime)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + forkserver_cpu_seconds()


def forkserver_cpu_seconds() -> float:
    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if not pid:
        return 0.0
    # /proc/PID/stat after the command name: utime, stime, cutime, cstime are fields 14-17.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def timed(fn, out: Path) -> tuple[float, float, dict]:
    """(wall s, CPU s, result) of fn(out) on an empty out."""
    shutil.rmtree(out, ignore_errors=True)  # our stage would otherwise resume from complete shards
    out.mkdir(parents=True)
    cpu, start = cpu_seconds(), time.perf_counter()
    result = fn(out)
    return time.perf_counter() - start, cpu_seconds() - cpu, result


def max_diff(shard_dir: Path, rows: list[dict], model: str) -> float:
    """max |pad(stored features) - WhisperFeatureExtractor(audio)| over rows, read back from shards."""
    from transformers import WhisperFeatureExtractor

    from whisper_ko import audio, features, shards

    extractor = WhisperFeatureExtractor.from_pretrained(model)
    records = shards.open(shard_dir)
    where = {records[i]["id"]: i for i in range(len(records))}
    worst = 0.0
    for row in rows:
        ours = features.pad(np.asarray(records[where[row["id"]]]["input_features"], dtype=np.float32))
        wave = audio.load(row["audio"])
        ref = extractor(wave, sampling_rate=TARGET_SR, return_tensors="np").input_features[0]
        worst = max(worst, float(np.abs(ours - ref).max()))
    return worst


def model_for(n_mels: int, model_80: str, model_128: str | None, workdir: Path) -> str:
    from whisper_ko import features

    if n_mels == 128 and not model_128:
        from whisper_ko_fixtures import sample_corpus, tiny_model

        model_128 = str(tiny_model.build(workdir / "tiny-ko-128", n_mels=128, texts=sample_corpus.training_texts()))
    model = model_80 if n_mels == 80 else model_128
    if not Path(model).exists():
        raise click.UsageError(f"model {model} not found: run `make tiny-model` or pass --model")
    if features.n_mels(model) != n_mels:
        raise click.UsageError(f"{model} expects {features.n_mels(model)} mels, not {n_mels}")
    return model


def fmt(value: float | None, unit: str = "") -> str:
    return "n/a (too few clips)" if value is None else f"{value:.1f}{unit}"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


@click.command()
@click.option("--corpus", default="data/sample", show_default=True, type=click.Path(path_type=Path))
@click.option("--clips", default=2000, show_default=True)
@click.option("--mean-duration", default=4.58, show_default=True, help="seconds; 0 = the corpus clips as they are")
@click.option("--workers", default=os.cpu_count(), show_default=True)
@click.option("--mels", "mel_sizes", default="80,128", show_default=True)
@click.option("--model", "model_80", default="models/tiny-ko", show_default=True, help="an 80-mel model")
@click.option("--model-128", default=None, help="a 128-mel model [default: a tiny one built in --workdir]")
@click.option(
    "--reference-chunk",
    "chunk",
    default=REFERENCE_CHUNK,
    show_default=True,
    help="clips per chunk, the reference approach's default",
)
@click.option("--shard-size", default=1000, show_default=True, help="clips per shard, params.yaml's default")
@click.option(
    "--reference-resampler",
    default="soxr",
    show_default=True,
    type=click.Choice(["soxr", "resampy"]),
    help="resampy = the reference approach's own kaiser_fast (pip install resampy), soxr HQ = a faster stand-in",
)
@click.option("--repeats", default=2, show_default=True, help="runs of each approach; the best one counts")
@click.option("--check-clips", default=50, show_default=True, help="clips compared with the extractor")
@click.option(
    "--workdir", default="/tmp/whisper-ko-preprocess-bench", show_default=True, type=click.Path(path_type=Path)
)
def main(
    corpus,
    clips,
    mean_duration,
    workers,
    mel_sizes,
    model_80,
    model_128,
    chunk,
    shard_size,
    reference_resampler,
    repeats,
    check_clips,
    workdir,
):
    if not corpus.exists():
        raise click.UsageError(f"corpus {corpus} not found: run `make sample-data` first, or pass --corpus")
    if reference_resampler == "resampy" and importlib.util.find_spec("resampy") is None:
        raise click.UsageError("--reference-resampler resampy needs resampy: pip install resampy")
    rows = make_clips(corpus, clips, mean_duration, workdir / "clips", workers)
    hours = sum(r["duration"] for r in rows) / 3600
    # Every worker must have work in the full run too, else its startup is counted only once.
    per_worker = -(-len(rows) // workers)
    check = rows[:: max(1, len(rows) // check_clips)][:check_clips]
    click.echo(
        f"{len(rows)} clips of 8 kHz telephone audio, {hours * 3600 / len(rows):.2f} s mean, {hours:.3f} h; "
        f"{workers} workers (spawn) for both, {os.cpu_count()} cores; reference chunks of {min(chunk, per_worker)}, "
        f"our shards of {min(shard_size, per_worker)}; "
        + (
            "the reference approach resamples with resampy's kaiser_fast, as librosa.load(res_type='kaiser_fast') does"
            if reference_resampler == "resampy"
            else "the reference approach loads with soundfile + soxr HQ instead of librosa's kaiser_fast "
            "(librosa and resampy are "
            "not installed; resampy is ~35x slower than soxr on these clips), which favours the reference approach"
        )
    )
    results = []
    for n_mels in [int(m) for m in mel_sizes.split(",")]:
        model = model_for(n_mels, model_80, model_128, workdir)
        out = workdir / "out"
        tiny = rows[:workers]
        runs = {
            "reference": (
                lambda o, rs, size, model=model: run_reference(rs, o, model, workers, size, reference_resampler),
                min(chunk, per_worker),
            ),
            "whisper_ko": (
                lambda o, rs, size, model=model: run_ours(rs, o, model, workers, size),
                min(shard_size, per_worker),
            ),
        }
        measured = {name: {"startup": [], "full": []} for name in runs}
        for _ in range(repeats):  # interleaved, so that load from elsewhere hits both alike
            for name, (run, size) in runs.items():
                startup = timed(lambda o, run=run, tiny=tiny: run(o, tiny, 1), out / f"{name}-{n_mels}-startup")
                measured[name]["startup"].append(startup)
                measured[name]["full"].append(
                    timed(lambda o, run=run, size=size: run(o, rows, size), out / f"{name}-{n_mels}")
                )
                result = measured[name]["full"][-1][2]
                if result["kept"] != len(rows):
                    raise click.ClickException(f"{name} kept {result['kept']} of {len(rows)} clips: {result}")
        for name, runs_of in measured.items():
            # best of the repeats: the least disturbed run
            start_wall, start_cpu = (min(t[k] for t in runs_of["startup"]) for k in (0, 1))
            wall, cpu = (min(t[k] for t in runs_of["full"]) for k in (0, 1))
            results.append(
                {
                    "name": name,
                    "n_mels": n_mels,
                    "startup_wall": start_wall,
                    "startup_cpu": start_cpu,
                    "wall": wall,
                    "cpu": cpu,
                    # None where the run is too short to tell its work from its startup
                    "steady": (len(rows) - len(tiny)) / (cpu - start_cpu) if cpu > 1.2 * start_cpu else None,
                    "bytes_per_hour": disk_bytes(out / f"{name}-{n_mels}") / hours,
                }
            )
        fp16 = max_diff(out / f"whisper_ko-{n_mels}", check, model)
        timed(
            lambda o, model=model: run_ours(check, o, model, workers, shard_size, "float32"),
            out / f"whisper_ko-{n_mels}-fp32",
        )
        fp32 = max_diff(out / f"whisper_ko-{n_mels}-fp32", check, model)
        results[-1].update(fp16=fp16, fp32=fp32)
        shutil.rmtree(out)  # gigabytes of padded features

    click.echo(
        "| approach | mels | wall s | clips/s (wall), per worker | CPU s | clips per CPU-s | startup CPU s (wall s) "
        "| steady clips per CPU-s | MB per audio-hour | max abs diff, fp16 / fp32 storage |"
    )
    click.echo("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        diff = f"{r['fp16']:.1e} / {r['fp32']:.1e}" if "fp16" in r else "(padded fp16)"
        click.echo(
            f"| {r['name']} | {r['n_mels']} | {r['wall']:.1f} | {len(rows) / r['wall']:.1f}, "
            f"{len(rows) / r['wall'] / workers:.1f} | {r['cpu']:.1f} | "
            f"{len(rows) / r['cpu']:.1f} | {r['startup_cpu']:.1f} ({r['startup_wall']:.1f}) | {fmt(r['steady'])} | "
            f"{r['bytes_per_hour'] / 1e6:.1f} | {diff} |"
        )
    for reference, ours in zip(results[::2], results[1::2], strict=True):
        size = reference["bytes_per_hour"] / ours["bytes_per_hour"]
        speed = ours["steady"] / reference["steady"] if ours["steady"] and reference["steady"] else None
        click.echo(
            f"{ours['n_mels']} mels: per-core throughput ratio {fmt(speed, 'x')} steady "
            f"({verdict(speed is not None and speed >= TARGETS['speed'])}, target >= {TARGETS['speed']:g}x; "
            f"{reference['cpu'] / ours['cpu']:.1f}x with startup, "
            f"{reference['wall'] / ours['wall']:.1f}x in wall time), "
            f"on-disk ratio {size:.1f}x ({verdict(size >= TARGETS['size'])}, target >= {TARGETS['size']:g}x), "
            f"max abs diff fp32 {ours['fp32']:.1e} ({verdict(ours['fp32'] <= TARGETS['fp32'])}, <= 1e-4), "
            f"fp16 {ours['fp16']:.1e} ({verdict(ours['fp16'] <= TARGETS['fp16'])}, <= 2e-3) over {len(check)} clips"
        )


if __name__ == "__main__":
    main()
