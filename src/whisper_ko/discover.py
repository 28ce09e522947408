"""Validate and split the candidates a layout scanner found: manifests plus a report that accounts
for every utterance (found = kept + skipped, per reason).

Validation is cheap: audio headers (sample rate, channels, frames), not decodes; label bytes
decoded as UTF-8 (with or without BOM), UTF-16 (with a BOM, or without one where its zero bytes
show it), else CP949 if the result reads as Korean; the label normalised by `whisper_ko.text`.
"""

import codecs
import hashlib
import json
import multiprocessing
import os
import re
import sys
import tempfile
from array import array
from collections import Counter, defaultdict, deque
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from operator import attrgetter
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from whisper_ko import manifest
from whisper_ko import text as textnorm
from whisper_ko.config import Discover, Text
from whisper_ko.dims import PCM_SAMPLE_RATE
from whisper_ko.errors import UserError
from whisper_ko.layouts import Candidate, Unit, UnitScan, aihub_units, locate, loop_candidates, scan, scan_units
from whisper_ko.ledger import MAX_EXAMPLES, Ledger
from whisper_ko.manifest import SPLITS, Utterance

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


def audio_digest(path: str) -> bytes:
    """Size and first bytes of a file: the same clip under two paths (a copy, a symlink) has the same."""
    with open(path, "rb") as f:
        head = f.read(DIGEST_BYTES)
    return _hash(head + str(os.path.getsize(path)).encode())


@dataclass(slots=True)
class Kept:
    """What the splits, the leak checks and the report need of a kept utterance; its manifest line
    waits in the spool (`index`), so memory holds ~300 bytes per utterance instead of its row."""

    index: int  # line in the spool
    id: str
    side: str
    category: str | None
    session: str
    group: str | None  # str(row[val_by]); None where the row has no such field
    duration: float
    real: bytes  # hash of the audio's real path: the same file through a symlink has the same
    digest: bytes  # size and first bytes: a copy of the file has the same
    notes: tuple  # values of NOTES, how its input was read


NOTES = ("sample_rate", "channels", "label_encoding", "markup_left_in_text", "no_hangul")


def probe(candidate: Candidate, policy: Text, max_duration: float) -> tuple[dict, tuple]:
    """(manifest row, notes on unusual input, as NOTES) for a candidate, or raise Skip with its reason."""
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
    notes = (
        sample_rate,
        channels,
        encoding,
        # notation the normaliser let through as content (chained fillers, full-width brackets): worth a look
        any(ch in text for ch in LEFTOVER_MARKUP),
        not HANGUL.search(text),  # a Korean corpus's label in another script
    )
    return row, notes


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _probe_chunk(chunk: list[Candidate], policy: Text, max_duration: float, val_by: str) -> list[tuple]:
    """Probe candidates in a worker: ("kept", side, manifest line, Kept's fields after `index`) or
    ("skipped", side, reason, path). The worker writes the line, so the main process never holds a row."""
    out = []
    for candidate in chunk:
        try:
            row, notes = probe(candidate, policy, max_duration)
        except Skip as skip:
            out.append(("skipped", candidate.side, skip.reason, skip.path))
            continue
        real = os.path.realpath(candidate.audio)
        group = str(row[val_by]) if val_by in row else None
        fields = (row["id"], candidate.side, row["category"], row["session"], group, row["duration"])
        identity = (_hash(real.encode("utf-8", "surrogateescape")), audio_digest(candidate.audio))
        line = json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n"
        out.append(("kept", candidate.side, line, (*fields, *identity, notes)))
    return out


@dataclass(frozen=True)
class Work:
    """What every task needs besides its own units or candidates."""

    category_pattern: str | None
    policy: Text
    max_duration: float
    val_by: str


def _units_task(units: list[Unit], work: Work) -> tuple[list[tuple], UnitScan]:
    """Scan and probe some AI Hub units (in a worker): the probe results, and what the scan found."""
    category_re = re.compile(work.category_pattern) if work.category_pattern else None
    try:
        scanned = scan_units(units, category_re)
    except OSError as err:  # a folder this process may not list: the whole corpus is what was asked for
        raise DiscoverError(f"discover.root: {err}; make it readable, or move it out of the corpus") from None
    results = _probe_chunk(scanned.candidates, work.policy, work.max_duration, work.val_by)
    scanned.candidates = []  # probed: no need to send them back
    return results, scanned


def _candidates_task(candidates: list[Candidate], work: Work) -> tuple[list[tuple], UnitScan]:
    """Probe candidates the main process scanned (the smaller layouts)."""
    return _probe_chunk(candidates, work.policy, work.max_duration, work.val_by), UnitScan([])


TASK_SIZE = 512  # candidates (or files) per task: enough to amortise its pickling, few enough to stream
FILES_PER_FOLDER = 16  # a guess for a unit's folder, to size tasks before walking them
IN_FLIGHT = 4  # tasks queued per worker: keeps workers busy while bounding what waits in memory
SERIAL_BELOW = 4000  # files (guessed): fewer are probed in this process, quicker than starting a pool


def _files(unit: Unit) -> int:
    return sum(FILES_PER_FOLDER if place.folder else 1 for place in unit.places)


def _unit_tasks(units: list[Unit]):
    """Consecutive units, about TASK_SIZE files each; `units` is emptied as it goes."""
    units.reverse()
    while units:
        task, size = [], 0
        while units and size < TASK_SIZE:
            task.append(units.pop())
            size += _files(task[-1])
        yield task


def _candidate_tasks(candidates: list[Candidate]):
    """TASK_SIZE candidates at a time; `candidates` is emptied as it goes, so their memory goes back."""
    candidates.reverse()
    while candidates:
        task = candidates[-TASK_SIZE:]
        del candidates[-TASK_SIZE:]
        task.reverse()
        yield task


def run_tasks(function, tasks, work: Work, workers: int, total: int | None, size: int, engine=None):
    """`function(task, work)` for each task, results in task order: in this process, or by the
    workers `engine` (`executor`) gives, a few tasks per worker in flight."""
    with tqdm(total=total, desc="discover", unit="utt", mininterval=1.0) as bar:
        if engine is None and (workers <= 1 or size < SERIAL_BELOW):
            for task in tasks:
                results, scanned = function(task, work)
                bar.update(len(results))
                yield results, scanned
            return
        with executor(engine, workers) as (submit, n_workers):
            pending = deque()
            for task in tasks:
                pending.append(submit(function, task, work))
                while len(pending) > n_workers * IN_FLIGHT:
                    results, scanned = pending.popleft().result()
                    bar.update(len(results))
                    yield results, scanned
            while pending:
                results, scanned = pending.popleft().result()
                bar.update(len(results))
                yield results, scanned


@contextmanager
def executor(engine: tuple[str, str | None] | None, workers: int):
    """(submit, number of workers): a pool on this host whose workers a fork server starts (a forked
    worker would share, then copy, the main process's heap; so a script calling discover with
    workers needs `if __name__ == "__main__":`), or a Dask cluster's workers for ("dask", address),
    a local cluster of `workers` processes where the address is None."""
    if engine is None:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
            yield pool.submit, workers
        return
    from dask.distributed import Client, LocalCluster

    _, address = engine
    with ExitStack() as stack:
        if address is None:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
            address = stack.enter_context(cluster)
        client = stack.enter_context(Client(address))
        n_workers = max(1, len(client.scheduler_info()["workers"]))
        yield partial(client.submit, pure=False), n_workers


def require_engine(config: Discover) -> tuple[str, str | None] | None:
    """The engine discover.engine names, checked before any work: None for this host's pool."""
    if config.engine == "local":
        return None
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        raise DiscoverError(
            "discover.engine dask needs Dask: pip install 'whisper-ko[cluster]' (or engine: local)"
        ) from None
    return config.engine, config.scheduler


# ---------------------------------------------------------------- splits


def hold_out(
    rows: list[Kept], fraction: float, cap: int | None, seed: int, by: str = "session"
) -> tuple[list[Kept], list[Kept]]:
    """(rest, held out): whole groups of rows sharing their `by` attribute (session, or group: the
    `val_by` field), about `fraction` of each category's rows. A group spanning categories (one
    template said in several) is held out whole."""
    if not rows or fraction <= 0:
        return rows, []
    share = min(fraction, cap / len(rows)) if cap else fraction
    rng = np.random.default_rng(seed)
    key = attrgetter(by)
    groups_by_category: dict[str, dict[str, int]] = defaultdict(Counter)
    for row in rows:
        groups_by_category[str(row.category)][key(row)] += 1
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
    return [r for r in rows if key(r) not in held], [r for r in rows if key(r) in held]


def limit_per_category(rows: list[Kept], limit: int | None, seed: int) -> tuple[list[Kept], list[Kept]]:
    """A seeded subset of at most `limit` rows per category; returns (kept, dropped)."""
    if not limit:
        return rows, []
    rng = np.random.default_rng(seed)
    by_category = defaultdict(list)
    for row in rows:
        by_category[str(row.category)].append(row.id)
    keep = set()
    for category in sorted(by_category):
        ids = by_category[category]
        keep.update(ids if len(ids) <= limit else [ids[i] for i in rng.permutation(len(ids))[:limit]])
    return [r for r in rows if r.id in keep], [r for r in rows if r.id not in keep]


def make_splits(
    kept: dict[str, list[Kept]], spool: "Spool", *, val_fraction, val_max, test_fraction, seed, val_by="session"
) -> dict[str, list[Kept]]:
    """train/val/test: the corpus's own test and val sides where it has them, else held-out sessions
    (val: held-out `val_by` groups)."""
    train, test = kept["train"], kept["test"]
    if not test:
        train, test = hold_out(train, test_fraction, None, seed + 1)
    val = kept["val"]
    if not val:
        without = sum(row.group is None for row in train)
        if without:
            raise DiscoverError(
                f"discover.val_by {val_by!r}: {without} of {len(train)} training utterances have no such field "
                f"(the manifest has: {', '.join(sorted(spool.row(train[0])))}); name one of those, or session"
            )
        train, val = hold_out(train, val_fraction, val_max, seed, "group")
    return {"train": train, "val": val, "test": test}


class Spool:
    """Manifest lines as the workers wrote them, in probe order, in an unnamed temporary file beside
    the manifests (it disappears with the process, whatever happens)."""

    def __init__(self, directory: Path):
        self.file = tempfile.TemporaryFile("w+b", dir=directory)  # noqa: SIM115 (closed by __exit__)
        self.offsets = array("q")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()

    def add(self, line: str) -> int:
        self.offsets.append(self.file.tell())
        self.file.write(line.encode("utf-8"))
        return len(self.offsets) - 1

    def line(self, row: Kept) -> bytes:
        self.file.seek(self.offsets[row.index])
        return self.file.readline()

    def row(self, row: Kept) -> dict:
        return json.loads(self.line(row))

    def audio(self, row: Kept) -> str:
        return self.row(row)["audio"]


# ---------------------------------------------------------------- the whole stage


def discover(config: Discover, policy: Text = Text(), need_val: bool = True) -> tuple[dict[str, list[Utterance]], dict]:
    """Manifests per split as rows in memory, and the report: `write_manifests` for a small corpus."""
    with tempfile.TemporaryDirectory() as directory:
        report = write_manifests(config, policy, directory, need_val)
        return {split: manifest.read(Path(directory) / f"{split}.jsonl") for split in SPLITS}, report


def write_manifests(config: Discover, policy: Text, directory: str | Path, need_val: bool = True) -> dict:
    """Write the manifests per split (rows sorted by id) into `directory`, and return the report
    (found = kept + skipped). `need_val`: an empty val split is an error (training selects and stops
    on it). Nothing is written but a temporary spool until every check has passed.

    An AI Hub corpus is listed as units (a call's folder) that the workers walk, pair and probe;
    the other layouts are scanned here and probed by the workers. The main process keeps a few
    hundred bytes per kept utterance (`Kept`), the rows themselves wait on disk."""
    engine = require_engine(config)
    loops: list[Path] = []
    try:
        root, layout = locate(config.root, config.layout)
        if layout == "aihub":
            units = aihub_units(root, loops)
            total, size, session_files = None, sum(map(_files, units)), 0
            tasks, function = _unit_tasks(units), _units_task
        else:
            scanned = scan(root, layout, re.compile(config.category_pattern) if config.category_pattern else None)
            total, session_files = len(scanned.candidates), scanned.session_files
            size = 2 * total  # an audio file and a label each
            tasks, function = _candidate_tasks(scanned.candidates), _candidates_task
    except (OSError, ValueError) as err:
        raise DiscoverError(f"discover.root {config.root}: {err}") from err
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    work = Work(config.category_pattern, policy, config.max_duration, config.val_by)
    n_found, sides, elsewhere = 0, set(), []
    kept = {"train": [], "val": [], "test": []}
    skipped = Ledger()
    notes_seen = {}  # one tuple per distinct notes value: most utterances share a few
    workers = config.workers or os.cpu_count() or 1
    with Spool(directory) as spool:
        for results, found in run_tasks(function, tasks, work, workers, total, size, engine):
            session_files += found.sessions
            loops += found.loops
            elsewhere += found.elsewhere
            for status, side, *value in results:
                n_found += 1
                sides.add(side)
                if status == "kept":
                    line, (id_, side, category, session, group, *rest, notes) = value
                    session, category = sys.intern(session), category and sys.intern(category)
                    group = session if group == session else group
                    notes = notes_seen.setdefault(notes, notes)
                    kept[side].append(Kept(spool.add(line), id_, side, category, session, group, *rest, notes))
                else:
                    skipped.add(*value)
        for candidate in loop_candidates(sorted(loops, key=str)):  # found by the units' walks
            n_found += 1
            sides.add(candidate.side)
            skipped.add(candidate.problem, candidate.audio)
        for rows in kept.values():
            rows.sort(key=attrgetter("id"))  # units come in key order: this only checks it
        splits = make_splits(
            kept,
            spool,
            val_fraction=config.val_fraction,
            val_max=config.val_max,
            test_fraction=config.test_fraction,
            seed=config.seed,
            val_by=config.val_by,
        )
        drop_test_audio(splits, spool, skipped)
        for name in splits:
            splits[name], dropped = limit_per_category(splits[name], config.max_per_category, config.seed)
            for row in dropped:
                skipped.add(
                    "over_max_per_category", spool.audio(row) if skipped.wants("over_max_per_category") else None
                )
            splits[name].sort(key=attrgetter("id"))
        # val held out of train by `val_by` groups; a corpus's own val side is kept apart by session
        held_by = None if kept["val"] else config.val_by
        check_leaks(splits, spool, "session" if (held_by or "session") == "session" else "group")
        notes = defaultdict(Counter)
        for row in (row for rows in splits.values() for row in rows):
            for name, value in zip(NOTES, row.notes, strict=True):
                notes[name][str(value)] += 1
        report = build_report(layout, n_found, session_files, splits, skipped, notes)
        report["root"] = str(root)
        report["val_held_out_by"] = held_by
        if lost := _kept_elsewhere(elsewhere, kept):
            report["session_entries_elsewhere"] = {"count": len(lost), "examples": lost[:MAX_EXAMPLES]}
        require_splits(splits, report, sides, config, need_val)
        for name, rows in splits.items():
            with (directory / f"{name}.jsonl").open("wb") as out:
                for row in rows:
                    out.write(spool.line(row))
    return report


def _kept_elsewhere(elsewhere: list[str], kept: dict[str, list[Kept]]) -> list[str]:
    """Utterances a session JSON outside their unit described: kept without that JSON's metadata."""
    if not elsewhere:
        return []
    ids = {row.id for rows in kept.values() for row in rows}
    return [key for key in elsewhere if key in ids]


def drop_test_audio(splits: dict[str, list[Kept]], spool: Spool, skipped: Ledger) -> None:
    """Train/val utterances whose audio is a test utterance's (the same file through a symlink, or
    a copy: same size and first bytes, then the same bytes throughout) are skipped, so no test
    clip is trained on."""
    real_paths = {row.real for row in splits["test"]}
    digests = {row.digest: row for row in splits["test"]}

    def is_test_audio(row: Kept) -> bool:
        if row.real in real_paths:
            return True
        twin = digests.get(row.digest)
        return twin is not None and _file_hash(spool.audio(row)) == _file_hash(spool.audio(twin))

    for name in ("train", "val"):
        rows, splits[name] = splits[name], []
        for row in rows:
            if is_test_audio(row):
                skipped.add("same_audio_as_a_test_utterance", spool.audio(row))
            else:
                splits[name].append(row)


def _file_hash(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_leaks(splits: dict[str, list[Kept]], spool: Spool, by: str = "session") -> None:
    """`by` groups (sessions, or the `val_by` field's values) never straddle train and val; no test
    audio is trained on; ids are unique."""
    key = attrgetter(by)
    shared = {key(r) for r in splits["train"]} & {key(r) for r in splits["val"]}
    if shared:
        raise AssertionError(f"{by} values in both train and val: {sorted(shared)[:5]}")
    trained = {r.real for name in ("train", "val") for r in splits[name]}
    leaked = [spool.audio(r) for r in splits["test"] if r.real in trained]
    if leaked:
        raise AssertionError(f"test audio also in train/val: {leaked[:5]}")
    ids = [r.id for rows in splits.values() for r in rows]
    if len(ids) != len(set(ids)):
        raise AssertionError(f"ids repeat across splits: {[i for i, n in Counter(ids).items() if n > 1][:5]}")


def require_splits(
    splits: dict[str, list[Utterance]], report: dict, sides: set[str], config: Discover, need_val: bool = True
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
        "kept": {s: dict(sorted(Counter(str(r.category) for r in rows).items())) for s, rows in splits.items()},
        "hours": {s: round(sum(r.duration for r in rows) / 3600, 4) for s, rows in splits.items()},
        "sessions": {s: len({r.session for r in rows}) for s, rows in splits.items()},
        "skipped": skipped.as_dict(),
        "kept_input": {name: dict(sorted(counts.items())) for name, counts in sorted(notes.items())},
        "session_files": session_files,
    }
