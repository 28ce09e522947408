"""Validate and split the candidates a layout scanner found: manifests plus a report that accounts
for every utterance (found = kept + skipped, per reason).

Validation is cheap: audio headers (sample rate, channels, frames), not decodes; label bytes
decoded as UTF-8 (with or without BOM), UTF-16 (with a BOM, or without one where its zero bytes
show it), else CP949 if the result reads as Korean; the label normalised by `whisper_ko.text`.
"""

import codecs
import hashlib
import os
import re
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from whisper_ko import text as textnorm
from whisper_ko.audio import PCM_SAMPLE_RATE
from whisper_ko.config import Discover, Text
from whisper_ko.errors import UserError
from whisper_ko.layouts import Candidate, scan
from whisper_ko.ledger import Ledger

UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
LEFTOVER_MARKUP = "/()（）"
HANGUL = re.compile("[가-힣ㄱ-ㅎㅏ-ㅣ]")
# Bytes hashed to recognise the same audio under two paths: the header and the first samples.
DIGEST_BYTES = 4096


class DiscoverError(UserError):
    """A corpus this run cannot use as it stands."""


class Skip(Exception):
    def __init__(self, reason: str, path: str | None):
        super().__init__(reason)
        self.reason, self.path = reason, path


# ---------------------------------------------------------------- one utterance


def read_label(path: str) -> tuple[str, str]:
    """(text, encoding): UTF-8, UTF-8 with BOM, UTF-16, else CP949 as older AI Hub sets and KsponSpeech
    use. UTF-8 and UTF-16 with a BOM say what they are; UTF-16 without one and CP949 are guesses, kept
    only where the text reads as Korean (another codec's bytes often decode as CP949 too)."""
    raw = Path(path).read_bytes()
    if raw.startswith(UTF16_BOMS):
        try:
            return raw.decode("utf-16").strip(), "utf-16"
        except UnicodeDecodeError:
            raise Skip("label_undecodable", path) from None
    for encoding in ("utf-8-sig", *_guesses(raw)):
        try:
            text = raw.decode(encoding).strip()
        except UnicodeDecodeError:
            continue
        if encoding == "utf-8-sig":
            return text, "utf-8-sig" if raw.startswith(codecs.BOM_UTF8) else "utf-8"
        if reads_as_korean(text):
            return text, encoding
        raise Skip("label_encoding_suspect", path)
    raise Skip("label_undecodable", path)


def _guesses(raw: bytes) -> tuple[str, ...]:
    """Codecs to try after UTF-8: UTF-16 first where zero bytes fall on one side of each pair (its
    ASCII characters and spaces have a zero byte; no CP949 or UTF-8 text has any)."""
    if len(raw) % 2 == 0 and b"\x00" in raw:
        odd = raw[1::2].count(0) > raw[0::2].count(0)
        return ("utf-16-le" if odd else "utf-16-be", "cp949")
    return ("cp949",)


# Korean text is Hangul syllables, almost all of them among KS X 1001's 2,350 common ones (CP949's
# lead bytes 0xB0-0xC8 with trail bytes from 0xA1), with digits and Latin letters. Another codec's
# bytes read as CP949 give rare syllables (Shift-JIS), Hanja (GBK) or loose jamo (EUC-JP).
def _common_letter(ch: str) -> bool:
    if ch.isascii():
        return ch.isalnum()
    if not "가" <= ch <= "힣":
        return False
    lead, trail = ch.encode("cp949")
    return 0xB0 <= lead <= 0xC8 and trail >= 0xA1


PLAUSIBLE_SHARE = 0.9  # of a label's letters; real CP949 transcripts are ~100%, other codecs far below


def reads_as_korean(text: str) -> bool:
    """Whether a label decoded by a guessed codec reads as Korean: its letters mostly common
    Hangul syllables, digits or Latin letters, and Hangul among them."""
    letters = [ch for ch in text if ch.isalnum()]
    common = sum(map(_common_letter, letters))
    return bool(HANGUL.search(text)) and common >= PLAUSIBLE_SHARE * len(letters)


def audio_header(path: str) -> tuple[int, int, int]:
    """(sample rate, channels, frames) from the header alone; float files, which alone can hold
    NaN or inf, are read whole to check that every sample is finite."""
    if path.lower().endswith(".pcm"):
        size = os.path.getsize(path)
        if size % 2:
            raise Skip("audio_unreadable", path)
        return PCM_SAMPLE_RATE, 1, size // 2
    try:
        info = sf.info(path)
        if info.subtype in ("FLOAT", "DOUBLE") and not np.isfinite(sf.read(path, dtype="float32")[0]).all():
            raise Skip("audio_not_finite", path)
    except (RuntimeError, OSError):
        raise Skip("audio_missing" if not os.path.exists(path) else "audio_unreadable", path) from None
    return info.samplerate, info.channels, info.frames


def audio_digest(path: str) -> str:
    """Size and first bytes of a file: the same clip under two paths (a copy, a symlink) has the same."""
    with open(path, "rb") as f:
        head = f.read(DIGEST_BYTES)
    return hashlib.blake2b(head + str(os.path.getsize(path)).encode(), digest_size=16).hexdigest()


def probe(candidate: Candidate, policy: Text, max_duration: float) -> tuple[dict, dict]:
    """(manifest row, notes on unusual input) for a candidate, or raise Skip with its reason.
    The audio's real path and digest travel in the notes (`_real`, `_digest`) for the leak check."""
    if candidate.problem:
        raise Skip(candidate.problem, candidate.label or candidate.audio)
    if candidate.label is None and candidate.text is None:
        raise Skip("audio_without_label", candidate.audio)
    if candidate.audio is None:
        raise Skip("label_without_audio", candidate.label)
    raw, encoding = (candidate.text, "inline") if candidate.text is not None else read_label(candidate.label)
    where = candidate.label or candidate.audio
    try:
        text = textnorm.normalize(raw, policy.side, policy.fillers, masked=policy.masked)
    except textnorm.TranscriptError as err:
        raise Skip(err.reason, where) from None
    if not text:
        raise Skip("empty_label", where)
    sample_rate, channels, frames = audio_header(candidate.audio)
    if frames == 0:
        raise Skip("audio_empty", candidate.audio)
    duration = frames / sample_rate
    if duration > max_duration:
        raise Skip("audio_too_long", candidate.audio)
    row = {
        # AI Hub numbers sessions per split: the side keeps ids and sessions unique across splits
        "id": f"{candidate.side}/{candidate.key}",
        "audio": candidate.audio,
        "sample_rate": sample_rate,
        "duration": round(duration, 4),
        "category": candidate.category,
        "raw_text": raw,
        "text": text,
        "session": f"{candidate.side}/{candidate.session}",
        **candidate.meta,
    }
    notes = {"sample_rate": sample_rate, "channels": channels, "label_encoding": encoding}
    # Notation the normaliser let through as content (chained fillers, full-width brackets): worth a look.
    notes["markup_left_in_text"] = any(ch in text for ch in LEFTOVER_MARKUP)
    notes["no_hangul"] = not HANGUL.search(text)  # a Korean corpus's label in another script
    notes.update(_real=os.path.realpath(candidate.audio), _digest=audio_digest(candidate.audio))
    return row, notes


def _probe_one(args) -> tuple:
    candidate, policy, max_duration = args
    try:
        return ("kept", *probe(candidate, policy, max_duration))
    except Skip as skip:
        return "skipped", skip.reason, skip.path


def probe_all(candidates: list[Candidate], policy: Text, max_duration: float, workers: int):
    """Probe in manifest order, in parallel: label reads and header probes are I/O plus a little CPU."""
    jobs = [(c, policy, max_duration) for c in candidates]
    bar = dict(total=len(jobs), desc="discover", unit="utt", mininterval=1.0)
    if workers <= 1 or len(jobs) < 1000:
        yield from tqdm(map(_probe_one, jobs), **bar)
        return
    chunksize = max(64, min(2048, len(jobs) // (workers * 16)))
    with ProcessPoolExecutor(workers) as pool:
        yield from tqdm(pool.map(_probe_one, jobs, chunksize=chunksize), **bar)


# ---------------------------------------------------------------- splits


def hold_out(
    rows: list[dict], fraction: float, cap: int | None, seed: int, by: str = "session"
) -> tuple[list[dict], list[dict]]:
    """(rest, held out): whole groups of rows sharing their `by` field, about `fraction` of each
    category's rows. A group spanning categories (one template said in several) is held out whole."""
    if not rows or fraction <= 0:
        return rows, []
    share = min(fraction, cap / len(rows)) if cap else fraction
    rng = np.random.default_rng(seed)
    groups_by_category: dict[str, dict[str, int]] = defaultdict(Counter)
    for row in rows:
        groups_by_category[str(row["category"])][str(row[by])] += 1
    held = set()
    for category in sorted(groups_by_category):
        sizes = groups_by_category[category]
        names = sorted(sizes)
        want = round(share * sum(sizes.values()))
        taken = sum(sizes[name] for name in held if name in sizes)
        for i in rng.permutation(len(names)):
            if taken >= want:
                break
            if names[i] not in held:
                held.add(names[i])
                taken += sizes[names[i]]
    return [r for r in rows if str(r[by]) not in held], [r for r in rows if str(r[by]) in held]


def limit_per_category(rows: list[dict], limit: int | None, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded subset of at most `limit` rows per category; returns (kept, dropped)."""
    if not limit:
        return rows, []
    rng = np.random.default_rng(seed)
    by_category = defaultdict(list)
    for row in rows:
        by_category[str(row["category"])].append(row["id"])
    keep = set()
    for category in sorted(by_category):
        ids = by_category[category]
        keep.update(ids if len(ids) <= limit else [ids[i] for i in rng.permutation(len(ids))[:limit]])
    return [r for r in rows if r["id"] in keep], [r for r in rows if r["id"] not in keep]


def make_splits(
    kept: dict[str, list[dict]], *, val_fraction, val_max, test_fraction, seed, val_by="session"
) -> dict[str, list[dict]]:
    """train/val/test: the corpus's own test and val sides where it has them, else held-out sessions
    (val: held-out `val_by` groups)."""
    train, test = kept["train"], kept["test"]
    if not test:
        train, test = hold_out(train, test_fraction, None, seed + 1)
    val = kept["val"]
    if not val:
        without = sum(val_by not in row for row in train)
        if without:
            raise DiscoverError(
                f"discover.val_by {val_by!r}: {without} of {len(train)} training utterances have no such field "
                f"(the manifest has: {', '.join(sorted(train[0]))}); name one of those, or session"
            )
        train, val = hold_out(train, val_fraction, val_max, seed, val_by)
    return {"train": train, "val": val, "test": test}


# ---------------------------------------------------------------- the whole stage


def discover(config: Discover, policy: Text = Text(), need_val: bool = True) -> tuple[dict[str, list[dict]], dict]:
    """Manifests per split (rows sorted by id) and the report (found = kept + skipped). `need_val`:
    an empty val split is an error (training selects and stops on it)."""
    try:
        found = scan(config.root, config.layout, config.category_pattern)
    except (OSError, ValueError) as err:
        raise DiscoverError(f"discover.root {config.root}: {err}") from err
    kept = {"train": [], "val": [], "test": []}
    skipped = Ledger()
    row_notes = {}  # row id → how its input was read, counted for the rows the splits keep
    identity = {}  # row id → (real path, digest) of its audio
    results = probe_all(found.candidates, policy, config.max_duration, config.workers or os.cpu_count() or 1)
    for candidate, (status, *value) in zip(found.candidates, results, strict=True):
        if status == "kept":
            row, note = value
            kept[candidate.side].append(row)
            identity[row["id"]] = (note.pop("_real"), note.pop("_digest"))
            row_notes[row["id"]] = note
        else:
            skipped.add(*value)
    sides = {candidate.side for candidate in found.candidates}

    splits = make_splits(
        kept,
        val_fraction=config.val_fraction,
        val_max=config.val_max,
        test_fraction=config.test_fraction,
        seed=config.seed,
        val_by=config.val_by,
    )
    drop_test_audio(splits, identity, skipped)
    for name in splits:
        splits[name], dropped = limit_per_category(splits[name], config.max_per_category, config.seed)
        for row in dropped:
            skipped.add("over_max_per_category", row["audio"])
        splits[name].sort(key=lambda r: r["id"])
    # val held out of train by `val_by` groups; a corpus's own val side is kept apart by session
    held_by = None if kept["val"] else config.val_by
    check_leaks(splits, identity, held_by or "session")
    notes = defaultdict(Counter)
    for row in (row for rows in splits.values() for row in rows):
        for name, value in row_notes[row["id"]].items():
            notes[name][str(value)] += 1
    report = build_report(found.layout, len(found.candidates), found.session_files, splits, skipped, notes)
    report["root"] = str(found.root)
    report["val_held_out_by"] = held_by
    require_splits(splits, report, sides, config, need_val)
    return splits, report


def drop_test_audio(splits: dict[str, list[dict]], identity: dict, skipped: Ledger) -> None:
    """Train/val utterances whose audio is a test utterance's (the same file through a symlink, or
    a copy: same size and first bytes, then the same bytes throughout) are skipped, so no test
    clip is trained on."""
    real_paths = {identity[row["id"]][0] for row in splits["test"]}
    digests = {identity[row["id"]][1]: identity[row["id"]][0] for row in splits["test"]}

    def is_test_audio(row: dict) -> bool:
        real, digest = identity[row["id"]]
        return real in real_paths or (digest in digests and _file_hash(real) == _file_hash(digests[digest]))

    for name in ("train", "val"):
        rows, splits[name] = splits[name], []
        for row in rows:
            if is_test_audio(row):
                skipped.add("same_audio_as_a_test_utterance", row["audio"])
            else:
                splits[name].append(row)


def _file_hash(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_leaks(splits: dict[str, list[dict]], identity: dict, val_by: str = "session") -> None:
    """`val_by` groups (sessions) never straddle train and val; no test audio is trained on; ids are unique."""
    shared = {str(r.get(val_by)) for r in splits["train"]} & {str(r.get(val_by)) for r in splits["val"]}
    if shared:
        raise AssertionError(f"{val_by} values in both train and val: {sorted(shared)[:5]}")
    trained = {identity[r["id"]][0] for name in ("train", "val") for r in splits[name]}
    leaked = [r["audio"] for r in splits["test"] if identity[r["id"]][0] in trained]
    if leaked:
        raise AssertionError(f"test audio also in train/val: {leaked[:5]}")
    ids = [r["id"] for rows in splits.values() for r in rows]
    if len(ids) != len(set(ids)):
        raise AssertionError(f"ids repeat across splits: {[i for i, n in Counter(ids).items() if n > 1][:5]}")


def require_splits(
    splits: dict[str, list[dict]], report: dict, sides: set[str], config: Discover, need_val: bool = True
) -> None:
    """A corpus that leaves train empty, val empty (where `need_val`: training needs it, or where the
    corpus has a val side), or test empty where it has (or is asked for) that side, fails now,
    saying what was found, rather than after preprocessing as a puzzle in train."""
    found = (
        f"{report['found']} utterances found under {report['root']} ({report['layout']} layout), "
        f"{report['kept_total']} kept; skipped: "
        + (", ".join(f"{reason} {entry['count']}" for reason, entry in report["skipped"].items()) or "none")
    )
    if not splits["train"]:
        raise DiscoverError(f"discover kept no training utterance: {found}")
    if not splits["test"] and ("test" in sides or config.test_fraction > 0):
        raise DiscoverError(f"the test split is empty: {found}")
    if not splits["val"] and ("val" in sides or config.val_fraction > 0):
        raise DiscoverError(
            f"the val split is empty (too few training sessions for discover.val_fraction "
            f"{config.val_fraction}?): {found}"
        )
    if not splits["val"] and need_val:
        raise DiscoverError(
            "the val split is empty: the corpus has no val side and discover.val_fraction is 0, but training "
            "selects its checkpoint and stops early on val; set discover.val_fraction, e.g. 0.1"
        )


def build_report(layout, found, session_files, splits, skipped, notes) -> dict:
    n_kept = sum(map(len, splits.values()))
    n_skipped = skipped.total()
    if n_kept + n_skipped != found:
        raise AssertionError(f"discover lost utterances: found {found}, kept {n_kept} + skipped {n_skipped}")
    return {
        "layout": layout,
        "found": found,
        "kept_total": n_kept,
        "skipped_total": n_skipped,
        "kept": {s: dict(sorted(Counter(str(r["category"]) for r in rows).items())) for s, rows in splits.items()},
        "hours": {s: round(sum(r["duration"] for r in rows) / 3600, 4) for s, rows in splits.items()},
        "sessions": {s: len({r["session"] for r in rows}) for s, rows in splits.items()},
        "skipped": skipped.as_dict(),
        "kept_input": {name: dict(sorted(counts.items())) for name, counts in sorted(notes.items())},
        "session_files": session_files,
    }
