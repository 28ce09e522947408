"""Find, pair, validate and split the utterances of a corpus in AI Hub's layout.

```
ROOT/1.Training/원천데이터_230316/TS_D01/D01/J01/S000001/0001.wav       → train (+ val)
ROOT/1.Training/라벨링데이터_230316/TL_D01/D01/J01/S000001/0001.txt    (+ S000001.json)
ROOT/2.Validation/원천데이터_230316/VS_D01/...                         → test
```
Audio and labels pair by their full path below the source/label roots (minus the optional
`TS_`/`TL_` level): session ids repeat across D/J folders. Every file found ends up either in a
manifest or under a skip reason: found = kept + skipped.
"""

import json
import os
import re
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from whisper_ko import text as textnorm

AUDIO_EXTENSIONS = {".wav", ".flac"}
SPLIT_DIRS = {"1.Training": "train", "2.Validation": "test"}
SOURCE_PREFIX, LABEL_PREFIX = "원천데이터", "라벨링데이터"
ZIP_LEVEL = re.compile(r"^[TV][SL]_")
UNKNOWN_VALUES = {"", "none", "null", "알수없음", "unknown", "-"}
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class TextPolicy:
    side: str = "spelling"
    fillers: str = "keep"
    masked: str = "drop"


@dataclass
class Candidate:
    """One utterance key with whatever files were found for it."""

    split: str
    key: str  # D01/J01/S000001/0001
    audio: str | None = None
    label: str | None = None
    meta: dict = field(default_factory=dict)


class Skip(Exception):
    def __init__(self, reason: str, path: str):
        super().__init__(reason)
        self.reason, self.path = reason, path


# ---------------------------------------------------------------- finding files


def scan_aihub(root: str | Path) -> tuple[list[Candidate], int]:
    """All utterance keys below `root`, and the number of session JSON files read."""
    root = Path(root)
    split_dirs = [(root / name, split) for name, split in SPLIT_DIRS.items() if (root / name).is_dir()]
    if not split_dirs:
        raise FileNotFoundError(f"{root}: no {' or '.join(SPLIT_DIRS)} directory (AI Hub layout)")
    candidates: dict[tuple[str, str], Candidate] = {}
    sessions = 0
    for split_dir, split in split_dirs:
        for tree in sorted(split_dir.iterdir()):
            is_source = tree.name.startswith(SOURCE_PREFIX)
            if not (is_source or tree.name.startswith(LABEL_PREFIX)):
                continue
            for path in _walk(tree):
                key_path = _utterance_path(path.relative_to(tree))
                suffix = path.suffix.lower()
                if suffix == ".json" and not is_source:
                    sessions += 1
                    for key, meta in _read_session(path).items():
                        candidates.setdefault((split, key), Candidate(split, key)).meta.update(meta)
                    continue
                if is_source and suffix in AUDIO_EXTENSIONS:
                    slot = "audio"
                elif not is_source and suffix == ".txt":
                    slot = "label"
                else:
                    continue
                key = key_path.with_suffix("").as_posix()
                setattr(candidates.setdefault((split, key), Candidate(split, key)), slot, str(path))
    # Session JSONs may list utterances that have neither file; they are not files we found.
    found = [c for c in candidates.values() if c.audio or c.label]
    return sorted(found, key=lambda c: (c.split, c.key)), sessions


def _walk(directory: Path):
    """Files below `directory`, depth first, by name (os.scandir: no stat per file)."""
    with os.scandir(directory) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_dir(follow_symlinks=True):
                yield from _walk(Path(entry.path))
            elif entry.is_file(follow_symlinks=True):
                yield Path(entry.path)


def _utterance_path(rel: Path) -> Path:
    """Path below the source/label root, without the zip-named level (TS_D01, VL_D02, ...)."""
    parts = rel.parts
    return Path(*parts[1:]) if len(parts) > 1 and ZIP_LEVEL.match(parts[0]) else rel


def _read_session(path: Path) -> dict[str, dict]:
    """Session JSON → {utterance key: metadata}; unreadable JSON contributes nothing."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))["dataSet"]
        info = data.get("typeInfo", {})
        speakers = {s.get("id"): s for s in info.get("speakers", [])}
        dialogs = data.get("dialogs", [])
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}
    out = {}
    for dialog in dialogs:
        if not isinstance(dialog, dict) or not dialog.get("audioPath"):
            continue
        speaker = speakers.get(dialog.get("speaker"), {})
        key = Path(dialog["audioPath"]).with_suffix("").as_posix()
        out[key] = {
            "subcategory": _known(info.get("subcategory")),
            "speaker_type": _known(speaker.get("type")),
            "gender": _known(speaker.get("gender")),
            "age": _known(speaker.get("age")),
            "network": _known(speaker.get("telephone_network")),
        }
    return out


def _known(value):
    if value is None or str(value).strip().lower() in UNKNOWN_VALUES:
        return None
    return str(value).strip()


# ---------------------------------------------------------------- validating one utterance


def read_label(path: str) -> str:
    """Label text; UTF-8 (with or without BOM), else CP949 as older AI Hub sets use."""
    raw = Path(path).read_bytes()
    for encoding in ("utf-8-sig", "cp949"):
        try:
            return raw.decode(encoding).strip()
        except UnicodeDecodeError:
            continue
    raise Skip("label_undecodable", path)


def probe(candidate: Candidate, policy: TextPolicy, max_duration: float, category_re: re.Pattern) -> dict:
    """Manifest row for a candidate, or raise Skip with its reason."""
    if candidate.label is None:
        raise Skip("audio_without_label", candidate.audio)
    if candidate.audio is None:
        raise Skip("label_without_audio", candidate.label)
    raw = read_label(candidate.label)
    try:
        text = textnorm.normalize(raw, policy.side, policy.fillers, masked=policy.masked)
    except textnorm.TranscriptError as err:
        raise Skip(err.reason, candidate.label) from None
    if not text:
        raise Skip("empty_label", candidate.label)
    try:
        info = sf.info(candidate.audio)
    except (RuntimeError, OSError):
        raise Skip("audio_unreadable", candidate.audio) from None
    if info.frames == 0:
        raise Skip("audio_empty", candidate.audio)
    duration = info.frames / info.samplerate
    if duration > max_duration:
        raise Skip("audio_too_long", candidate.audio)
    parts = candidate.key.split("/")
    category = next((p for p in parts if category_re.fullmatch(p)), None)
    return {
        "id": candidate.key,
        "audio": candidate.audio,
        "sample_rate": info.samplerate,
        "duration": round(duration, 4),
        "category": category,
        "raw_text": raw,
        "text": text,
        "session": "/".join(parts[:-1]),
        **candidate.meta,
    }


def _probe_one(args) -> tuple[str, dict | tuple[str, str]]:
    candidate, policy, max_duration, pattern = args
    try:
        return "kept", probe(candidate, policy, max_duration, re.compile(pattern))
    except Skip as skip:
        return "skipped", (skip.reason, skip.path)


def probe_all(candidates, policy: TextPolicy, max_duration: float, category_pattern: str, workers: int):
    """Probe candidates in parallel (label reads and header probes are I/O plus a little CPU)."""
    jobs = [(c, policy, max_duration, category_pattern) for c in candidates]
    chunksize = max(1, min(512, len(jobs) // (workers * 8) or 1))
    if workers <= 1 or len(jobs) < 256:
        results = map(_probe_one, jobs)
        yield from tqdm(results, total=len(jobs), desc="discover", unit="utt")
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from tqdm(pool.map(_probe_one, jobs, chunksize=chunksize), total=len(jobs), desc="discover", unit="utt")


# ---------------------------------------------------------------- splitting


def split_val(rows: list[dict], fraction: float, cap: int | None, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out whole sessions of the training side, per category, about `fraction` of each."""
    total = len(rows)
    target_share = fraction if not cap else min(fraction, cap / max(total, 1))
    rng = np.random.default_rng(seed)
    by_category: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_category[row["category"] or ""][row["session"]].append(row)
    val_sessions = set()
    for category in sorted(by_category):
        sessions = by_category[category]
        names = sorted(sessions)
        want = round(target_share * sum(map(len, sessions.values())))
        taken = 0
        for i in rng.permutation(len(names)):
            if taken >= want:
                break
            val_sessions.add(names[i])
            taken += len(sessions[names[i]])
    train = [r for r in rows if r["session"] not in val_sessions]
    val = [r for r in rows if r["session"] in val_sessions]
    return train, val


def limit_per_category(rows: list[dict], limit: int | None, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded subset of at most `limit` rows per category; returns (kept, dropped)."""
    if not limit:
        return rows, []
    rng = np.random.default_rng(seed)
    by_category = defaultdict(list)
    for row in rows:
        by_category[row["category"]].append(row)
    keep_ids = set()
    for category in sorted(by_category, key=str):
        group = by_category[category]
        chosen = rng.permutation(len(group))[:limit] if len(group) > limit else range(len(group))
        keep_ids.update(group[i]["id"] for i in chosen)
    return [r for r in rows if r["id"] in keep_ids], [r for r in rows if r["id"] not in keep_ids]


# ---------------------------------------------------------------- the whole stage


def discover(
    root: str | Path,
    *,
    policy: TextPolicy = TextPolicy(),
    category_pattern: str = r"D\d\d",
    max_duration: float = 30.0,
    val_fraction: float = 0.1,
    val_max: int | None = None,
    max_per_category: int | None = None,
    seed: int = 0,
    workers: int | None = None,
) -> tuple[dict[str, list[dict]], dict]:
    """Manifests per split and the report (found = kept + skipped)."""
    candidates, session_files = scan_aihub(root)
    kept_by_side = defaultdict(list)
    skipped = defaultdict(lambda: {"count": 0, "examples": []})
    for (status, value), candidate in zip(
        probe_all(candidates, policy, max_duration, category_pattern, workers or os.cpu_count() or 1), candidates
    ):
        if status == "kept":
            kept_by_side[candidate.split].append(value)
        else:
            _record_skip(skipped, *value)

    train, val = split_val(kept_by_side["train"], val_fraction, val_max, seed)
    splits = {"train": train, "val": val, "test": kept_by_side["test"]}
    for name in splits:
        splits[name], dropped = limit_per_category(splits[name], max_per_category, seed)
        for row in dropped:
            _record_skip(skipped, "over_max_per_category", row["audio"])
    report = build_report(len(candidates), session_files, splits, skipped)
    return splits, report


def _record_skip(skipped: dict, reason: str, path: str) -> None:
    entry = skipped[reason]
    entry["count"] += 1
    if len(entry["examples"]) < MAX_EXAMPLES:
        entry["examples"].append(path)


def build_report(found: int, session_files: int, splits: dict[str, list[dict]], skipped: dict) -> dict:
    kept = {
        split: dict(sorted(Counter(str(r["category"]) for r in rows).items())) for split, rows in splits.items()
    }
    hours = {split: round(sum(r["duration"] for r in rows) / 3600, 4) for split, rows in splits.items()}
    n_kept = sum(len(rows) for rows in splits.values())
    n_skipped = sum(entry["count"] for entry in skipped.values())
    if n_kept + n_skipped != found:
        raise AssertionError(f"discover lost utterances: found {found}, kept {n_kept} + skipped {n_skipped}")
    return {
        "found": found,
        "kept_total": n_kept,
        "skipped_total": n_skipped,
        "kept": kept,
        "hours": hours,
        "skipped": dict(sorted(skipped.items())),
        "session_files": session_files,
    }


def report_markdown(report: dict) -> str:
    categories = sorted({c for per in report["kept"].values() for c in per})
    lines = [
        f"# discover: {report['found']} found = {report['kept_total']} kept + {report['skipped_total']} skipped",
        "",
        "| split | " + " | ".join(categories) + " | total | hours |",
        "|---" * (len(categories) + 3) + "|",
    ]
    for split, per in report["kept"].items():
        cells = [str(per.get(c, 0)) for c in categories]
        lines.append(f"| {split} | " + " | ".join(cells) + f" | {sum(per.values())} | {report['hours'][split]} |")
    lines += ["", "| skipped because | count | example |", "|---|---|---|"]
    for reason, entry in report["skipped"].items():
        example = entry["examples"][0] if entry["examples"] else ""
        lines.append(f"| {reason} | {entry['count']} | `{example}` |")
    return "\n".join(lines) + "\n"
