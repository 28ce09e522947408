"""Corpus layouts: find every audio file and label of a corpus and pair them into candidates.

Each scanner returns `Candidate`s: one per utterance key, holding whatever was found for it (audio,
a label file or inline label text). Validation happens later (discover.probe), so a scanner never
drops anything: an audio file without a label is still a candidate, and becomes a counted skip.

- `aihub`: AI Hub sets (`1.Training`/`2.Validation`, mirrored 원천데이터/라벨링데이터 trees,
  optional `TS_`/`TL_` zip level and date suffix, session JSONs).
- `kspon`: KsponSpeech (headerless `.pcm` + CP949 `.txt`, or `.trn` scripts `path :: text`).
- `plain`: any tree of audio files with a same-named `.txt` beside each.
- `jsonl`: an existing NeMo-style manifest (`audio_filepath`, `text`, `duration`, extra keys).
"""

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from whisper_ko.manifest import METADATA_FIELDS

LAYOUTS = ("aihub", "kspon", "plain", "jsonl")
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".pcm"}
AIHUB_SPLITS = {"1.Training": "train", "2.Validation": "test"}
AIHUB_SOURCE, AIHUB_LABEL = "원천데이터", "라벨링데이터"
AIHUB_ZIP_LEVEL = re.compile(r"^[TV][SL]_")
KSPON_EVAL = ("eval_clean", "eval_other")
# Top-level folder or file names that say which split a plain tree or JSONL manifest belongs to.
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "eval": "test",
    "evaluation": "test",
}
UNKNOWN_VALUES = {"", "none", "null", "알수없음", "unknown", "-"}
AIHUB_DIALOG_KEYS = {"speaker", "audioPath", "duration", "text"}


@dataclass(slots=True)  # millions of them wait to be probed: no __dict__ each
class Candidate:
    """One utterance key with whatever files were found for it."""

    side: str  # train (val is held out of it later), val, or test
    key: str  # unique id, e.g. D01/J01/S000001/0001
    audio: str | None = None
    label: str | None = None  # path of a label file
    text: str | None = None  # label text given inline (.trn script, JSONL manifest)
    category: str | None = None
    session: str | None = None
    meta: dict = field(default_factory=dict)
    problem: str | None = None  # a skip reason known while scanning


@dataclass
class Scan:
    layout: str
    candidates: list[Candidate]
    session_files: int = 0
    root: Path | None = None  # the folder the corpus was found in (auto looks a few levels down)


# How deep `auto` looks below discover.root for a folder in a known layout: the unzipped AI Hub
# download puts `1.Training` two levels down (007.저음질 전화망 음성인식 데이터/01.데이터/).
SEARCH_DEPTH = 3


def find_corpus(root: Path) -> tuple[Path, str]:
    """The folder holding a corpus in a known layout: `root` itself, else the first one found
    breadth first within SEARCH_DEPTH levels below it; a tree of plain pairs otherwise."""
    level = [root]
    for _ in range(SEARCH_DEPTH + 1):
        for folder in level:
            layout = detect(folder)
            if layout != "plain":
                return folder, layout
        level = [d for folder in level for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    return root, "plain"


def detect(root: Path) -> str:
    """The layout of `root`, from cheap looks at its top level."""
    if root.is_file():
        if root.suffix.lower() in (".jsonl", ".json"):
            return "jsonl"
        raise ValueError(f"{root}: a file root must be a JSONL manifest")
    names = {p.name for p in root.iterdir()}
    if names & set(AIHUB_SPLITS) or any(n.startswith((AIHUB_SOURCE, AIHUB_LABEL)) for n in names):
        return "aihub"
    if any(n.startswith("KsponSpeech") or n.endswith(".trn") for n in names):
        return "kspon"
    if any(n.endswith(".jsonl") for n in names):
        return "jsonl"
    return "plain"


def locate(root: str | Path, layout: str = "auto") -> tuple[Path, str]:
    """(the folder or file the corpus is in, its layout), `auto` resolved."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError("no such file or folder")
    if root.is_file() and layout not in ("auto", "jsonl"):
        raise ValueError(f"a file root must be a JSONL manifest (discover.layout jsonl), not layout {layout}")
    if layout == "auto":
        root, layout = (root, detect(root)) if root.is_file() else find_corpus(root)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: choose one of auto, {', '.join(LAYOUTS)}")
    return root, layout


def scan(root: Path, layout: str, category_re: re.Pattern | None) -> Scan:
    """Every candidate of a located corpus in the kspon, plain or jsonl layout at once, sorted by
    (side, key). AI Hub corpora, the large ones, are scanned a unit at a time (`aihub_units`)."""
    scanner = {"kspon": scan_kspon, "plain": scan_plain, "jsonl": scan_jsonl}[layout]
    loops: list[Path] = []
    result = scanner(root, category_re, loops)
    result.candidates += loop_candidates(loops)
    result.candidates.sort(key=lambda c: (c.side, c.key))
    result.root = root
    return result


def loop_candidates(loops: list[Path]) -> list[Candidate]:
    """A folder linking back to one it is inside would make the walk endless: each is a counted skip."""
    return [Candidate("train", f"symlink_loop/{path}", audio=str(path), problem="symlink_loop") for path in loops]


def walk(directory: Path, loops: list[Path], inside: frozenset = frozenset()):
    """Files below `directory` as Paths, depth first, by name (`files`)."""
    for entry in files(str(directory), loops, inside):
        yield Path(entry.path)


def files(directory: str, loops: list[Path], inside: frozenset = frozenset()):
    """Files below `directory` as os.DirEntry, depth first, by name (os.scandir: no stat call per
    file). A symlinked folder that leads back to one the walk is inside (`inside`: the identities
    of the folders above `directory`) goes to `loops`, not entered."""
    inside = inside | {identity(directory)}
    with os.scandir(directory) as found:
        entries = sorted(found, key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir():
            if entry.is_symlink() and identity(entry.path) in inside:
                loops.append(Path(entry.path))
                continue
            yield from files(entry.path, loops, inside)
        elif entry.is_file():
            yield entry


def identity(folder: str) -> tuple[int, int]:
    """(device, inode) of a folder, links followed: one stat call, where its real path costs one per component."""
    stat = os.stat(folder)
    return stat.st_dev, stat.st_ino


def category_of(parts, category_re: re.Pattern | None) -> str | None:
    if category_re is None:
        return None
    return next((p for p in parts if category_re.fullmatch(p)), None)


def known(value):
    """Metadata value, or None for the corpus's ways of writing 'unknown'."""
    if value is None or str(value).strip().lower() in UNKNOWN_VALUES:
        return None
    return str(value).strip()


# ---------------------------------------------------------------- AI Hub


# Key components that name a unit of work: AI Hub's D01/J01/S000001, one call. discover's workers
# walk, pair and probe whole units, so the main process never holds the corpus's candidates.
UNIT_DEPTH = 3


@dataclass(frozen=True, slots=True)
class Place:
    """Where part of a unit lies: a folder to walk, or a single file, in a source or label tree."""

    tree: str
    source: bool
    path: str
    folder: bool = False
    inside: frozenset = frozenset()  # identities of the folders above a folder: a link back up is a loop


@dataclass(slots=True)
class Unit:
    """The files of the utterance keys that start with `key` (up to UNIT_DEPTH components)."""

    side: str
    key: str
    places: list[Place]


@dataclass(slots=True)
class UnitScan:
    """What scanning some units found: candidates sorted by key, session JSONs read, looping
    links, and session JSON entries naming an utterance outside their own unit (`side/key`)."""

    candidates: list[Candidate]
    sessions: int = 0
    loops: list[Path] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)


def aihub_units(root: Path, loops: list[Path]) -> list[Unit]:
    """The units of an AI Hub corpus in (side, key) order: the folders UNIT_DEPTH key components
    down, merged across the source and label trees, and files above that depth on their own."""
    split_dirs = [(root / name, side) for name, side in AIHUB_SPLITS.items() if (root / name).is_dir()]
    if not split_dirs:
        raise FileNotFoundError(f"{root}: no {' or '.join(AIHUB_SPLITS)} folder (AI Hub layout)")
    units: dict[tuple[str, str], Unit] = {}
    for split_dir, side in split_dirs:
        for tree in sorted(split_dir.iterdir()):
            is_source = tree.name.startswith(AIHUB_SOURCE)
            if is_source or tree.name.startswith(AIHUB_LABEL):
                _list_units(tree, tree, is_source, side, "", frozenset(), units, loops)
    # by key and a slash: a unit's keys are its own or continue with "/", so units in this order
    # give their candidates in (side, key) order
    return [units[k] for k in sorted(units, key=lambda k: (k[0], k[1] + "/"))]


def _list_units(folder: Path, tree: Path, source: bool, side: str, prefix: str, inside, units, loops) -> None:
    inside = inside | {identity(str(folder))}
    depth = prefix.count("/")
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_dir():
                if entry.is_symlink() and identity(entry.path) in inside:
                    loops.append(Path(entry.path))
                elif folder == tree and AIHUB_ZIP_LEVEL.match(entry.name):  # TS_D01: not a key component
                    _list_units(Path(entry.path), tree, source, side, prefix, inside, units, loops)
                elif depth + 1 == UNIT_DEPTH:
                    _unit(units, side, prefix + entry.name).places.append(
                        Place(str(tree), source, entry.path, True, inside)
                    )
                else:
                    _list_units(Path(entry.path), tree, source, side, f"{prefix}{entry.name}/", inside, units, loops)
            elif entry.is_file():
                key = prefix + Path(entry.name).with_suffix("").name
                _unit(units, side, key).places.append(Place(str(tree), source, entry.path))


def _unit(units: dict, side: str, key: str) -> Unit:
    if (side, key) not in units:
        units[side, key] = Unit(side, key, [])
    return units[side, key]


def unit_of(key: str) -> str:
    return "/".join(key.split("/")[:UNIT_DEPTH])


def scan_units(units: list[Unit], category_re) -> UnitScan:
    """Pair the files of each unit into candidates. A session JSON describes its own unit's
    utterances (as AI Hub's do, beside or inside their folder); an entry for another unit's is
    not applied, and listed in `elsewhere`."""
    out = UnitScan([])
    for unit in units:
        found: dict[tuple[str, str], Candidate] = {}
        extras: list[Candidate] = []
        for place in unit.places:
            tree, target = Path(place.tree), Path(place.path)
            for path in walk(target, out.loops, place.inside) if place.folder else (target,):
                suffix = path.suffix.lower()
                if suffix == ".json" and not place.source:
                    out.sessions += 1
                    for key, meta in read_aihub_session(path).items():
                        if unit_of(key) != unit.key:
                            out.elsewhere.append(f"{unit.side}/{key}")
                            continue
                        candidate = _candidate(found, unit.side, key, category_re)
                        # shared, not copied: a session's utterances by one speaker have the same
                        candidate.meta = {**candidate.meta, **meta} if candidate.meta else meta
                elif place.source and suffix in AUDIO_EXTENSIONS:
                    _add_audio(_candidate(found, unit.side, _aihub_key(path, tree), category_re), path, extras)
                elif not place.source and suffix == ".txt":
                    _candidate(found, unit.side, _aihub_key(path, tree), category_re).label = str(path)
        # Session JSONs may list utterances that have neither file: those are not files we found.
        candidates = [c for c in found.values() if c.audio or c.label] + extras
        out.candidates += sorted(candidates, key=lambda c: c.key)
    return out


def _candidate(found: dict, side: str, key: str, category_re) -> Candidate:
    if (side, key) not in found:
        parts = key.split("/")
        category, session = category_of(parts, category_re), sys.intern("/".join(parts[:-1]))
        found[side, key] = Candidate(side, key, category=category, session=session)
    return found[side, key]


def _add_audio(candidate: Candidate, path: Path, extras: list[Candidate]) -> None:
    """The first audio file of an utterance key (by name: x.flac before x.wav) is its audio; another
    one of the same stem in the same folder becomes a candidate of its own, skipped with its reason."""
    if candidate.audio is None:
        candidate.audio = str(path)
        return
    extras.append(
        Candidate(
            candidate.side,
            f"{candidate.key}{path.suffix}",
            audio=str(path),
            category=candidate.category,
            session=candidate.session,
            problem="audio_same_stem",
        )
    )


def _aihub_key(path: Path, tree: Path) -> str:
    """Path below the source/label root without the zip level (TS_D01, VL_D02) or extension."""
    parts = path.relative_to(tree).with_suffix("").parts
    if len(parts) > 1 and AIHUB_ZIP_LEVEL.match(parts[0]):
        parts = parts[1:]
    return "/".join(parts)


def read_aihub_session(path: Path) -> dict[str, dict]:
    """Session JSON → {utterance key: metadata}; an unreadable JSON contributes nothing."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))["dataSet"]
        info = data.get("typeInfo", {})
        speakers = {s.get("id"): s for s in info.get("speakers", [])}
        dialogs = [d for d in data.get("dialogs", []) if isinstance(d, dict) and d.get("audioPath")]
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}
    out, shared = {}, {}
    for dialog in dialogs:
        speaker = speakers.get(dialog.get("speaker"), {})
        # Keys a dialog entry has beyond AI Hub's own (the sample corpus marks test sentences
        # never heard in training, `sentence`) travel into the manifest for benchmark.group_by.
        extra = {k: v for k, v in dialog.items() if k not in AIHUB_DIALOG_KEYS and isinstance(v, (str, int, float))}
        meta = {
            "subcategory": known(info.get("subcategory")),
            "speaker_type": known(speaker.get("type")),
            "gender": known(speaker.get("gender")),
            "age": known(speaker.get("age")),
            "network": known(speaker.get("telephone_network")),
            **extra,
        }
        # one dict per distinct value: a call's utterances by one speaker share it
        meta = shared.setdefault(tuple(meta.items()), meta)
        out[str(Path(dialog["audioPath"]).with_suffix("").as_posix())] = meta
    return out


# ---------------------------------------------------------------- KsponSpeech


def scan_kspon(root: Path, category_re, loops: list[Path]) -> Scan:
    scripts = sorted(root.rglob("*.trn"))
    audio, labels, twins = {}, {}, []
    for path in walk(root, loops):
        rel = path.relative_to(root).with_suffix("").as_posix()
        if path.suffix.lower() == ".pcm":
            _add_path(audio, rel, path, twins)
        elif path.suffix.lower() == ".txt" and not scripts:
            labels[rel] = path
    texts = {}
    for script in scripts:
        side = _kspon_script_side(script)
        for rel, text in _read_trn(script):
            texts[rel] = (side, text)
    candidates = []
    for rel, path in twins:
        candidates.append(
            Candidate(
                "test" if set(KSPON_EVAL) & set(rel.split("/")) else "train",
                f"{rel}{path.suffix}",
                audio=str(path),
                problem="audio_same_stem",
            )
        )
    for rel in sorted(set(audio) | set(labels) | set(texts)):
        side, text = texts.get(rel, (None, None))
        eval_set = next((name for name in KSPON_EVAL if name in rel.split("/")), None)
        side = side or ("test" if eval_set else "train")
        candidates.append(
            Candidate(
                side,
                rel,
                audio=str(audio[rel]) if rel in audio else None,
                label=str(labels[rel]) if rel in labels else None,
                text=text,
                category=eval_set if side == "test" else category_of(rel.split("/")[:-1], category_re),
                session=rel.rsplit("/", 1)[0] if "/" in rel else "",
            )
        )
    return Scan("kspon", candidates)


def _kspon_script_side(script: Path) -> str:
    stem = script.stem.lower()
    if stem in KSPON_EVAL:
        return "test"
    return SPLIT_NAMES.get(stem, "train")


def _read_trn(script: Path):
    """`KsponSpeech_01/KsponSpeech_0001/KsponSpeech_000001.pcm :: 텍스트` lines."""
    for line in script.read_text(encoding="utf-8-sig").splitlines():
        if "::" not in line:
            continue
        path, text = (part.strip() for part in line.split("::", 1))
        yield Path(path).with_suffix("").as_posix(), text


# ---------------------------------------------------------------- plain pairs


def scan_plain(root: Path, category_re, loops: list[Path]) -> Scan:
    audio, labels, twins = {}, {}, []
    for path in walk(root, loops):
        rel = path.relative_to(root).with_suffix("").as_posix()
        suffix = path.suffix.lower()
        if suffix in AUDIO_EXTENSIONS:
            _add_path(audio, rel, path, twins)
        elif suffix == ".txt":
            labels[rel] = path

    def candidate(rel: str, key: str, **files) -> Candidate:
        parts = rel.split("/")
        side = SPLIT_NAMES.get(parts[0].lower(), "train") if len(parts) > 1 else "train"
        return Candidate(
            side, key, category=category_of(parts[:-1], category_re), session="/".join(parts[:-1]), **files
        )

    candidates = [
        candidate(
            rel, rel, audio=str(audio[rel]) if rel in audio else None, label=str(labels[rel]) if rel in labels else None
        )
        for rel in sorted(set(audio) | set(labels))
    ]
    candidates += [
        candidate(rel, f"{rel}{path.suffix}", audio=str(path), problem="audio_same_stem") for rel, path in twins
    ]
    return Scan("plain", candidates)


def _add_path(audio: dict[str, Path], rel: str, path: Path, twins: list[tuple[str, Path]]) -> None:
    """`_add_audio` for scanners that pair by relative path: a second file of a stem goes to `twins`."""
    if rel in audio:
        twins.append((rel, path))
    else:
        audio[rel] = path


# ---------------------------------------------------------------- JSONL manifests


def scan_jsonl(root: Path, category_re, loops: list[Path]) -> Scan:
    files = [root] if root.is_file() else sorted(root.glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"{root}: no .jsonl manifest")
    candidates = []
    for manifest in files:
        side = SPLIT_NAMES.get(manifest.stem.split("_")[0].split(".")[0].lower(), "train")
        seen = set()
        for n, line in enumerate(manifest.read_text(encoding="utf-8-sig").splitlines(), 1):
            if line.strip():
                candidate = _jsonl_candidate(manifest, n, line, side, category_re)
                if candidate.key in seen:  # the same line twice, or another line for the same utterance
                    candidate = _bad_line(manifest, n, side, "manifest_line_duplicate")
                seen.add(candidate.key)
                candidates.append(candidate)
    return Scan("jsonl", candidates)


def _bad_line(manifest: Path, n: int, side: str, problem: str) -> Candidate:
    """A manifest line that names no utterance, counted under its line number."""
    return Candidate(side, f"{manifest.stem}:{n:07d}", label=f"{manifest}:{n}", problem=problem)


def _jsonl_candidate(manifest: Path, n: int, line: str, side: str, category_re) -> Candidate:
    try:
        entry = json.loads(line)
        given = Path(entry["audio_filepath"])
        if not str(entry["audio_filepath"]).strip():
            raise ValueError("an empty audio path")
    except (ValueError, KeyError, TypeError):
        return _bad_line(manifest, n, side, "manifest_line_invalid")
    audio = given if given.is_absolute() else manifest.parent / given
    return Candidate(
        side,
        str(entry.get("id") or given.with_suffix("").as_posix().lstrip("/")),
        audio=str(audio),
        text=str(entry.get("text") or ""),
        category=entry.get("category") or category_of(given.parts[:-1], category_re),
        session=entry.get("session") or given.parent.as_posix(),
        meta={k: known(entry.get(k)) for k in METADATA_FIELDS if k in entry},
    )
