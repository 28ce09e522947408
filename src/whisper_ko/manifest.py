"""Manifests: one JSON object per utterance, one file per split (lhotse-style plain data)."""

import json
from collections.abc import Iterable
from pathlib import Path

from whisper_ko.errors import UserError

SPLITS = ("train", "val", "test")
# Contract fields (DESIGN.md); corpora with session metadata add METADATA_FIELDS.
FIELDS = ("id", "audio", "sample_rate", "duration", "category", "raw_text", "text", "session")
METADATA_FIELDS = ("subcategory", "speaker_type", "gender", "age", "network")


def write(path: str | Path, rows: Iterable[dict]) -> int:
    """Write rows as JSONL, keys in a fixed order, so equal inputs give byte-identical files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n


def read(path: str | Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_split(directory: str | Path, split: str) -> list[dict]:
    """The split's manifest in `directory` (paths.manifests); a missing one is a one-line error."""
    path = Path(directory) / f"{split}.jsonl"
    if not path.is_file():
        raise UserError(f"{path} not found: run the discover stage first")
    return read(path)
