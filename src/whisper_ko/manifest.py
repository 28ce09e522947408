"""Manifests: one JSON object per utterance, one file per split (lhotse-style plain data)."""

import json
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Required, TypedDict

from whisper_ko.errors import UserError

SPLITS = ("train", "val", "test")


class Utterance(TypedDict, total=False):
    """One manifest line, the record every stage passes on (lhotse's SupervisionSegment is the
    model): a plain mapping, so that JSON is its form on disk and in the workers' queues. A corpus may
    add fields of its own (e.g. the sample corpus's `template`), which discover.val_by and
    benchmark.group_by can name."""

    id: Required[str]  # <side>/<key>: unique across splits
    audio: Required[str]  # the audio file's path
    duration: Required[float]  # seconds
    text: Required[str]  # the normalised transcript: the training target and the scoring reference
    raw_text: str  # the transcript as the corpus wrote it
    sample_rate: int  # the file's own; every stage resamples to 16 kHz
    category: str | None  # the path component discover.category_pattern matched
    session: str | None  # <side>/<call>: what val and test hold out whole
    # session metadata, where the corpus has it (AI Hub's session JSONs)
    subcategory: str
    speaker_type: str
    gender: str
    age: str
    network: str


REQUIRED = tuple(sorted(Utterance.__required_keys__))
METADATA_FIELDS = ("subcategory", "speaker_type", "gender", "age", "network")


def write(path: str | Path, rows: Iterable[Utterance]) -> int:
    """Write rows as JSONL, keys in a fixed order, so equal inputs give byte-identical files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n


def read(path: str | Path, fields: Collection[str] | None = None, required: Collection[str] = ()) -> list[Utterance]:
    """The rows of a manifest, a line at a time. `fields`: only these keys of each row, for a stage
    that needs a few (a row's raw text and metadata are most of its memory). Values that repeat
    from row to row (a category, a session) are one string each, not one per row. A row without a
    `required` key is a one-line error."""
    rows, shared = [], {}
    with Path(path).open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if lacking := [key for key in required if key not in row]:
                raise UserError(f"{path} line {number} has no {', '.join(lacking)}: rerun the discover stage")
            if fields is not None:
                row = {key: row[key] for key in fields if key in row}
            for key in SHARED:
                if isinstance(value := row.get(key), str):
                    row[key] = shared.setdefault(value, value)
            rows.append(row)
    return rows


SHARED = ("category", "session", *METADATA_FIELDS)


def read_split(directory: str | Path, split: str, fields: Collection[str] | None = None) -> list[Utterance]:
    """The split's manifest in `directory` (paths.manifests); a missing one, or a line without a
    REQUIRED field, is a one-line error."""
    path = Path(directory) / f"{split}.jsonl"
    if not path.is_file():
        raise UserError(f"{path} not found: run the discover stage first")
    return read(path, fields, required=REQUIRED)
