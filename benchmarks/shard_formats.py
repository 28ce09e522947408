"""Feature storage formats, measured on the same real features: which one the preprocess stage writes.

Features: `whisper_ko.features.log_mel` of the corpus's kept clips (`whisper_ko.audio.load`), --n-mels
mels, unpadded, fp16, with their label ids; --clips cycles the clips when larger than the corpus.
Each format writes them all, then reads back --reads records in a shuffled order (seeded), in one
process, each read giving the float32 (n_mels, T) array the collator pads:
  - whisper_ko.shards: zstd per record (level `shards.ZSTD_LEVEL`), one data file, .npz index, mmap;
  - whisper_ko.shards layout with the fp16 bytes split into high/low planes before zstd (a variant);
  - HF datasets Arrow, `Array2D(shape=(None, n_mels), dtype="float16")` (frames first), save_to_disk,
    load_from_disk (memory-mapped) with `.with_format("numpy")`;
  - HF datasets Arrow, `List(List(float16))` (n_mels first), what `Dataset.from_dict` makes of 2-D
    numpy arrays (the reference approach's format, here unpadded);
  - numpy memmap: every record's (n_mels, T) fp16 values back to back, uncompressed, offsets index;
  - lilcom (lossy, ~1 byte per value), only if the package is importable.
Reported per format: MB per audio-hour on disk (and GB for AI Hub's 6,500 h), write seconds,
records/s read, max |read - source| over all records (0 for the lossless ones). The page cache is
warm for every format (just written).

    python benchmarks/shard_formats.py --clips 2000 --reads 2000
"""

import importlib.util
import shutil
import time
from pathlib import Path

import click
import numpy as np
import zstandard

from whisper_ko import audio, dims, features, labels, shards
from whisper_ko.config import Discover

AIHUB_HOURS = 6500  # AI Hub's telephone corpus

# ---------------------------------------------------------------- formats: write(dir, records), open(dir) -> get(i)


def write_shards(out: Path, records: list[dict], n_mels: int) -> None:
    writer = shards.ShardWriter(out / "shard-00000", n_mels, "float16")
    for r in records:
        writer.add(r["id"], r["feats"], r["labels"], r["duration"], None)
    writer.close()


def open_shards(out: Path):
    data = shards.open(out)
    return lambda i: np.asarray(data[i]["input_features"], dtype=np.float32)


def write_split_planes(out: Path, records: list[dict], n_mels: int) -> None:
    """Our layout, each fp16 record stored as its high bytes then its low bytes, then zstd."""
    compressor = zstandard.ZstdCompressor(level=shards.ZSTD_LEVEL)
    offsets, frames = [0], []
    with (out / "data.bin").open("wb") as f:
        for r in records:
            planes = np.ascontiguousarray(r["feats"], dtype="<f2").view(np.uint8).reshape(-1, 2).T
            blob = compressor.compress(np.ascontiguousarray(planes).tobytes())
            f.write(blob)
            offsets.append(offsets[-1] + len(blob))
            frames.append(r["feats"].shape[1])
    np.savez(
        out / "index.npz",
        offsets=np.array(offsets, np.int64),
        frames=np.array(frames, np.int32),
        labels=np.concatenate([r["labels"] for r in records]).astype(np.int32),
        label_offsets=np.cumsum([0, *(len(r["labels"]) for r in records)]),
        n_mels=n_mels,
    )


def open_split_planes(out: Path):
    import mmap

    index = dict(np.load(out / "index.npz"))
    f = (out / "data.bin").open("rb")
    data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    decompressor, n_mels = zstandard.ZstdDecompressor(), int(index["n_mels"])
    offsets, frames = index["offsets"], index["frames"]

    def get(i):
        raw = np.frombuffer(decompressor.decompress(data[offsets[i] : offsets[i + 1]]), np.uint8)
        values = np.ascontiguousarray(raw.reshape(2, -1).T).view("<f2")
        return values.reshape(n_mels, int(frames[i])).astype(np.float32)

    return get


def arrow_features(n_mels: int, array2d: bool):
    from datasets import Array2D, Features, List, Value

    feats = Array2D(shape=(None, n_mels), dtype="float16") if array2d else List(List(Value("float16")))
    return Features({"id": Value("string"), "input_features": feats, "labels": List(Value("int32"))})


def write_arrow(out: Path, records: list[dict], n_mels: int, array2d: bool) -> None:
    from datasets import Dataset

    def rows():
        for r in records:
            feats = r["feats"].T if array2d else r["feats"]  # Array2D's variable dimension is the first
            yield {"id": r["id"], "input_features": feats, "labels": r["labels"]}

    columns = {key: [row[key] for row in rows()] for key in ("id", "input_features", "labels")}
    Dataset.from_dict(columns, features=arrow_features(n_mels, array2d)).save_to_disk(str(out / "arrow"))


def open_arrow(out: Path, array2d: bool):
    from datasets import load_from_disk

    ds = load_from_disk(str(out / "arrow")).with_format("numpy")

    def get(i):
        feats = ds[int(i)]["input_features"]
        if not array2d and feats.dtype == object:  # ragged nesting comes back as an array of arrays
            feats = np.stack(feats)
        feats = np.asarray(feats, dtype=np.float32)
        return np.ascontiguousarray(feats.T) if array2d else feats

    return get


def write_memmap(out: Path, records: list[dict], n_mels: int) -> None:
    sizes = [r["feats"].size for r in records]
    offsets = np.cumsum([0, *sizes], dtype=np.int64)
    data = np.lib.format.open_memmap(out / "data.npy", mode="w+", dtype=np.float16, shape=(int(offsets[-1]),))
    for r, lo, hi in zip(records, offsets[:-1], offsets[1:], strict=True):
        data[lo:hi] = r["feats"].ravel()
    data.flush()
    del data
    np.savez(
        out / "index.npz",
        offsets=offsets,
        frames=np.array([r["feats"].shape[1] for r in records], np.int32),
        labels=np.concatenate([r["labels"] for r in records]).astype(np.int32),
        label_offsets=np.cumsum([0, *(len(r["labels"]) for r in records)]),
        n_mels=n_mels,
    )


def open_memmap(out: Path):
    index = dict(np.load(out / "index.npz"))
    data = np.load(out / "data.npy", mmap_mode="r")
    offsets, frames, n_mels = index["offsets"], index["frames"], int(index["n_mels"])
    return lambda i: data[offsets[i] : offsets[i + 1]].reshape(n_mels, int(frames[i])).astype(np.float32)


def write_lilcom(out: Path, records: list[dict], n_mels: int) -> None:
    import lilcom

    blobs = [lilcom.compress(r["feats"].astype(np.float32)) for r in records]
    offsets = np.cumsum([0, *map(len, blobs)], dtype=np.int64)
    (out / "data.bin").write_bytes(b"".join(blobs))
    np.savez(
        out / "index.npz",
        offsets=offsets,
        labels=np.concatenate([r["labels"] for r in records]).astype(np.int32),
        label_offsets=np.cumsum([0, *(len(r["labels"]) for r in records)]),
    )


def open_lilcom(out: Path):
    import mmap

    import lilcom

    offsets = np.load(out / "index.npz")["offsets"]
    f = (out / "data.bin").open("rb")
    data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return lambda i: lilcom.decompress(bytes(data[offsets[i] : offsets[i + 1]])).astype(np.float32)


FORMATS = [  # (directory, name, write, open)
    ("shards", "whisper_ko.shards (fp16 + zstd per record, mmap)", write_shards, open_shards),
    ("planes", "shards layout, fp16 byte planes + zstd", write_split_planes, open_split_planes),
    (
        "arrow-array2d",
        "HF Arrow, Array2D((None, n_mels), float16)",
        lambda o, r, n: write_arrow(o, r, n, array2d=True),
        lambda o: open_arrow(o, array2d=True),
    ),
    (
        "arrow-lists",
        "HF Arrow, List(List(float16)) (the reference approach's, unpadded)",
        lambda o, r, n: write_arrow(o, r, n, array2d=False),
        lambda o: open_arrow(o, array2d=False),
    ),
    ("memmap", "numpy memmap, fp16 uncompressed + offsets", write_memmap, open_memmap),
    ("lilcom", "lilcom (lossy)", write_lilcom, open_lilcom),
]


def load_records(corpus: Path, clips: int, n_mels: int, model: str) -> list[dict]:
    from whisper_ko.discover import discover

    splits, _ = discover(Discover(root=str(corpus)))
    rows = sorted((r for rs in splits.values() for r in rs), key=lambda r: r["id"])
    tokenizer = labels.load_tokenizer(model)
    sources = []
    for row, ids in zip(rows[:clips], labels.encode(tokenizer, [row["text"] for row in rows[:clips]]), strict=True):
        wave = audio.load(row["audio"])
        sources.append(
            {
                "feats": features.log_mel(wave, n_mels).astype(np.float16),
                "labels": np.array(ids, dtype=np.int32),
                "duration": len(wave) / dims.SAMPLE_RATE,
                "id": row["id"],
            }
        )
    return [{**sources[i % len(sources)], "id": f"{i:06d}/{sources[i % len(sources)]['id']}"} for i in range(clips)]


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@click.command()
@click.option("--corpus", default="data/sample", show_default=True, type=click.Path(path_type=Path))
@click.option("--clips", default=2000, show_default=True)
@click.option("--reads", default=2000, show_default=True)
@click.option("--n-mels", default="80", show_default=True, type=click.Choice(["80", "128"]))
@click.option("--model", default="models/tiny-ko", show_default=True, help="its tokenizer gives the labels")
@click.option("--workdir", default="/tmp/whisper-ko-shard-formats", show_default=True, type=click.Path(path_type=Path))
def main(corpus, clips, reads, n_mels, model, workdir):
    if not corpus.exists():
        raise click.UsageError(f"corpus {corpus} not found: run `make sample-data` first, or pass --corpus")
    n_mels = int(n_mels)
    records = load_records(corpus, clips, n_mels, model)
    hours = sum(r["duration"] for r in records) / 3600
    order = np.random.default_rng(0).integers(0, len(records), size=reads)
    click.echo(
        f"{len(records)} records, {hours * 3600 / len(records):.2f} s mean, {hours:.3f} h, {n_mels} mels fp16; "
        f"{reads} reads in a shuffled order, one process, warm page cache"
    )
    click.echo("| format | MB per audio-hour | GB for 6,500 h | write s | reads/s | max abs diff vs fp16 source |")
    click.echo("|---|---|---|---|---|---|")
    for slug, name, write, open_ in FORMATS:
        if slug == "lilcom" and importlib.util.find_spec("lilcom") is None:
            click.echo(f"| {name} | not installed (pip install lilcom) | | | | |")
            continue
        out = workdir / slug
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        start = time.perf_counter()
        write(out, records, n_mels)
        write_s = time.perf_counter() - start
        get = open_(out)
        get(0)  # opening costs (lazy mmap, Arrow table) are not per read
        start = time.perf_counter()
        for i in order:
            get(i)
        read_s = time.perf_counter() - start
        diff = max(float(np.abs(get(i) - r["feats"].astype(np.float32)).max()) for i, r in enumerate(records))
        per_hour = disk_bytes(out) / hours
        shutil.rmtree(out)
        click.echo(
            f"| {name} | {per_hour / 1e6:.1f} | {per_hour * AIHUB_HOURS / 1e9:.0f} | {write_s:.2f} | "
            f"{reads / read_s:.0f} | {diff:.1e} |"
        )


if __name__ == "__main__":
    main()
