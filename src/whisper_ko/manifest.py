"""Manifests: one JSON object per utterance, one file per split (lhotse-style plain data)."""

import json
from collections.abc import Collection, Iterable
from pathlib import Path

from whisper_ko.errors import UserError

SPLITS = ("train", "val", "test")
# Contract fields: what every stage may rely on; corpora with session metadata add METADATA_FIELDS.
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


def read(path: str | Path, fields: Collection[str] | None = None) -> list[dict]:
    """The rows of a manifest, a line at a time. `fields`: only these keys of each row, for a stage
    that needs a few (a row's raw text and metadata are most of its memory). Values that repeat
    from row to row (a category, a session) are one string each, not one per row."""
    rows, shared = [], {}
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            if fields is not None:
                row = {key: row[key] for key in fields if key in row}
            for key in SHARED:
                if isinstance(value := row.get(key), str):
                    row[key] = shared.setdefault(value, value)
            rows.append(row)
    return rows


SHARED = ("category", "session", *METADATA_FIELDS)


def read_split(directory: str | Path, split: str, fields: Collection[str] | None = None) -> list[dict]:
    """The split's manifest in `directory` (paths.manifests); a missing one is a one-line error."""
    path = Path(directory) / f"{split}.jsonl"
    if not path.is_file():
        raise UserError(f"{path} not found: run the discover stage first")
    return read(path, fields)
