"""Compact feature shards: unpadded log-mels, compressed per record, memory-mapped for random access.

A shard is two files: `NAME.bin`, the records' zstd-compressed feature bytes back to back, and
`NAME.idx.npz`, the index (offsets, shapes, label ids, ids, durations, categories, utterances per
record: a packed window holds several). Each record
decompresses on its own, so a Dataset reads one utterance without touching the others, and the
page cache, not the process, holds the data.

Both files are written under temporary names and renamed into place, the index last and only
after any older index is gone: an index always stands beside the data it describes, so a killed
or failed rewrite leaves an incomplete shard (rewritten next time), never a trusted corrupt one.
The files' bytes depend only on their content (the index's zip entries carry a fixed date).

Every byte is checked: the index holds a CRC-32 of each record's compressed bytes, checked
whenever the record is read, and the data file ends with a digest of the whole index, checked
whenever the shard is opened. A flipped byte anywhere is a `CorruptShard` naming the shard (and
the utterance), never different features or a codec's error.
"""

import hashlib
import io
import json
import mmap
import os
import zipfile
import zlib
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import zstandard

from whisper_ko.errors import UserError

DATA_SUFFIX = ".bin"
INDEX_SUFFIX = ".idx.npz"
PARTIAL = ".partial"  # what a writer writes to before renaming into place
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # zip's earliest date: the same bytes for the same index
DTYPES = {"float16": np.float16, "float32": np.float32}
COPY_MARK = "#"  # an augmented copy's id: `<original id>#<how>` (speed0.9, noise)
ZSTD_LEVEL = 1  # level 3 saves ~0.3% of bytes for ~5% of the preprocessing time
DIGEST_SIZE = 32  # the index's BLAKE2b digest, at the end of the data file
FORMAT = 3  # 2: record checksums and the index digest; 3: utterances per record


class MissingShards(UserError, FileNotFoundError):
    """No complete shard where features were expected."""


class CorruptShard(UserError):
    """A shard whose bytes are not the ones written: rerunning preprocess rewrites it. One message
    argument, as torch re-raises an error from a DataLoader worker; `found` says what was wrong."""

    def __init__(self, message: str, found: str | None = None):
        super().__init__(message)
        self.found = found or message


def corrupt(path: Path, what: str) -> CorruptShard:
    message = f"feature shard {path} is corrupt ({what}): rerun the preprocess stage, which rewrites it"
    return CorruptShard(message, f"{path}: {what}")


def index_digest(index_bytes: bytes) -> bytes:
    return hashlib.blake2b(index_bytes, digest_size=DIGEST_SIZE).digest()


class ShardWriter:
    """Writes one shard; the index is written last (atomically), so an index marks a complete shard."""

    def __init__(self, path: str | Path, n_mels: int, dtype: str = "float16", meta: dict | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.n_mels = n_mels
        self.dtype = np.dtype(DTYPES[dtype])
        self.torch_dtype = getattr(torch, dtype)
        self.meta = meta or {}
        self.file = self.path.with_suffix(DATA_SUFFIX + PARTIAL).open("wb")
        self.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        self.rows: list[tuple] = []
        self.offset = 0

    def add(
        self,
        id: str,
        features: np.ndarray,
        labels: Sequence[int],
        duration: float,
        category: str | None,
        utterances: int = 1,
    ):
        if features.ndim != 2 or features.shape[0] != self.n_mels:
            raise ValueError(f"{id}: features must be ({self.n_mels}, T), got {features.shape}")
        # torch's cast to float16 is vectorised; numpy's costs as much as the compression.
        blob = self.compressor.compress(torch.from_numpy(np.ascontiguousarray(features)).to(self.torch_dtype).numpy())
        self.file.write(blob)
        row = (
            id,
            self.offset,
            len(blob),
            zlib.crc32(blob),
            features.shape[1],
            list(labels),
            duration,
            category or "",
            utterances,
        )
        self.rows.append(row)
        self.offset += len(blob)

    def __len__(self) -> int:
        return len(self.rows)

    def close(self) -> int:
        columns = zip(*self.rows, strict=True) if self.rows else ([],) * 9
        ids, offsets, sizes, checksums, frames, labels, durations, categories, utterances = columns
        label_offsets = np.cumsum([0, *map(len, labels)], dtype=np.int64)
        header = {"format": FORMAT, "n_mels": self.n_mels, "dtype": self.dtype.name, "bytes": self.offset, **self.meta}
        index_bytes = npz_bytes(
            ids=np.array(ids, dtype=str),
            offsets=np.array(offsets, dtype=np.int64),
            sizes=np.array(sizes, dtype=np.int64),
            checksums=np.array(checksums, dtype=np.uint32),
            frames=np.array(frames, dtype=np.int32),
            label_offsets=label_offsets,
            labels=np.array([t for row in labels for t in row], dtype=np.int32),
            durations=np.array(durations, dtype=np.float32),
            categories=np.array(categories, dtype=str),
            utterances=np.array(utterances, dtype=np.int32),
            header=np.array(json.dumps(header)),
        )
        self.file.write(index_digest(index_bytes))
        self.file.close()
        index = self.path.with_suffix(INDEX_SUFFIX)
        partial = index.with_suffix(index.suffix + PARTIAL)
        partial.write_bytes(index_bytes)
        index.unlink(missing_ok=True)  # an older index must never describe the new data
        os.replace(self.path.with_suffix(DATA_SUFFIX + PARTIAL), self.path.with_suffix(DATA_SUFFIX))
        os.replace(partial, index)
        return len(self.rows)


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """np.savez's format with fixed entry dates (np.savez stamps the time of writing)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE), buffer.getvalue())
    return out.getvalue()


def complete(path: Path) -> "Shard | None":
    """The shard at `path` if both its files are there, of this format, and agree (the index's
    digest at the end of data as long as the index says), else None."""
    try:
        return Shard(path)
    except (CorruptShard, FileNotFoundError):
        return None


def verify(path: Path) -> str | None:
    """Why the shard at `path` cannot be trusted (every record's checksum is checked), or None."""
    try:
        return Shard(path).verify()
    except CorruptShard as err:
        return err.found
    except FileNotFoundError as err:
        return str(err)


class Shard(Sequence):
    """Random access to one shard's records."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        index_bytes = self.path.with_suffix(INDEX_SUFFIX).read_bytes()
        data = self.path.with_suffix(DATA_SUFFIX)
        with data.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(size - DIGEST_SIZE, 0))
            if size < DIGEST_SIZE or f.read() != index_digest(index_bytes):
                raise corrupt(self.path, "its index does not match the digest at the end of its data")
        try:
            with np.load(io.BytesIO(index_bytes)) as index:
                self.index = {name: index[name] for name in index.files}
            self.header = json.loads(str(self.index["header"]))
            if self.header.get("format") != FORMAT or size != self.header["bytes"] + DIGEST_SIZE:
                raise ValueError("an older format, or data of another length than its index says")
        except (ValueError, KeyError, OSError, zipfile.BadZipFile) as err:
            raise corrupt(self.path, f"unreadable index: {err}") from None
        self.n_mels = self.header["n_mels"]
        self.dtype = np.dtype(self.header["dtype"])
        self.mapped = None
        self.decompressor = zstandard.ZstdDecompressor()

    def __len__(self) -> int:
        return len(self.index["ids"])

    def mapped_data(self) -> mmap.mmap:
        # Opened lazily so a Shard pickles cheaply into DataLoader workers before first use.
        if self.mapped is None:
            with self.path.with_suffix(DATA_SUFFIX).open("rb") as f:
                self.mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(f.fileno()).st_size else b""
        return self.mapped

    def __getstate__(self):
        return {**self.__dict__, "mapped": None}

    def labels(self, i: int) -> list[int]:
        lo, hi = self.index["label_offsets"][i : i + 2]
        return self.index["labels"][lo:hi].tolist()

    def verify(self) -> str | None:
        """Why this shard's records cannot be trusted (each one's checksum), or None."""
        try:
            for i in range(len(self)):
                self.compressed(i)
        except CorruptShard as err:
            return err.found
        return None

    def compressed(self, i: int) -> bytes:
        """Record i's stored bytes, checked against their checksum."""
        offset, size = int(self.index["offsets"][i]), int(self.index["sizes"][i])
        blob = self.mapped_data()[offset : offset + size]
        if zlib.crc32(blob) != int(self.index["checksums"][i]):
            raise corrupt(self.path, f"record {i}, {self.index['ids'][i]}, fails its checksum")
        return blob

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        frames = int(self.index["frames"][i])
        raw = self.decompressor.decompress(self.compressed(i))
        feats = np.frombuffer(raw, dtype=self.dtype).reshape(self.n_mels, frames)
        return {
            "id": str(self.index["ids"][i]),
            "input_features": feats,
            "labels": self.labels(i),
            "duration": float(self.index["durations"][i]),
            "category": str(self.index["categories"][i]) or None,
            "utterances": int(self.index["utterances"][i]),
        }


class ShardSet(Sequence):
    """Several shards read as one sequence, in shard-name order."""

    def __init__(self, shards: list[Shard]):
        self.shards = shards
        self.starts = np.cumsum([0, *map(len, shards)]).tolist()

    def __len__(self) -> int:
        return self.starts[-1]

    def locate(self, i: int) -> tuple[Shard, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        k = bisect_right(self.starts, i) - 1
        return self.shards[k], i - self.starts[k]

    def __getitem__(self, i: int) -> dict:
        shard, j = self.locate(i)
        return shard[j]

    def label_lengths(self) -> np.ndarray:
        """Label length of every record, from the indexes alone (no feature is read)."""
        return np.concatenate([np.diff(s.index["label_offsets"]) for s in self.shards])

    def utterances(self) -> int:
        """Utterances in all records (a packed window counts each of its own)."""
        return int(sum(s.index["utterances"].sum() for s in self.shards))

    def ids(self) -> list[str]:
        return [str(i) for s in self.shards for i in s.index["ids"]]

    @property
    def n_mels(self) -> int:
        return self.shards[0].n_mels


def shard_paths(directory: str | Path) -> list[Path]:
    """Complete shards in `directory` (those whose index exists), by name."""
    return sorted(p.with_name(p.name[: -len(INDEX_SUFFIX)]) for p in Path(directory).glob(f"*{INDEX_SUFFIX}"))


def open(path: str | Path) -> ShardSet:
    """Open a shard (`path` without suffix) or a directory of shards."""
    path = Path(path)
    if path.is_dir():
        paths = shard_paths(path)
    elif path.with_suffix(INDEX_SUFFIX).exists():
        paths = [path]
    else:
        paths = []
    if not paths:
        raise MissingShards(f"no feature shards in {path}: run the preprocess stage first")
    return ShardSet([Shard(p) for p in paths])
