"""Training windows: one utterance each, or several consecutive ones packed into Whisper's 30 s.

A packed window holds a session's consecutive utterances in their order (or seeded groups of a
category's), with a seeded stretch of silence between them, as Whisper was pre-trained: the
encoder then spends its 30 s on speech instead of padding. Planning works from the manifest alone,
so every window is known before any audio is read; each choice (gaps, timestamps, the single
share) is seeded by the first utterance's id, so a window does not change when others come or go.
The worker that writes a window (`preprocess`) checks the real audio and label lengths with `fit`:
a window that would not fit is split, never truncated.

Labels of a packed window (`labels.window_ids`) carry segment timestamps on a seeded share
(`pack.timestamps`), `<|notimestamps|>` and the texts joined by a space on the others.
"""

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from whisper_ko.config import Pack
from whisper_ko.dims import CHUNK_LENGTH, N_SAMPLES, SAMPLE_RATE
from whisper_ko.manifest import Utterance

WINDOW_MARK = "+"  # a packed window's id: `<first utterance id>+<number of utterances>`


@dataclass(frozen=True)
class Window:
    """What one training record is made of: its utterances (manifest rows) and the silence between them."""

    parts: tuple[dict, ...]
    gaps: tuple[float, ...] = ()  # seconds of silence after each part but the last
    timestamps: bool = False  # labelled with segment timestamps instead of <|notimestamps|>
    packed: bool = False  # a packed window (its id says so), even when it holds one utterance
    max_s: float = float(CHUNK_LENGTH)  # audio per window, gaps included; a longer one is split

    @property
    def id(self) -> str:
        first = self.parts[0]["id"]
        return f"{first}{WINDOW_MARK}{len(self.parts)}" if self.packed else first

    @property
    def duration(self) -> float:
        """Planned seconds (the manifest's durations and the gaps)."""
        return sum(part["duration"] for part in self.parts) + sum(self.gaps)

    def key(self) -> list:
        """What the window's record depends on, for the shard's fingerprint."""
        parts = [(p["id"], p["audio"], p["text"], p.get("augment")) for p in self.parts]
        return [parts, list(self.gaps), self.timestamps, self.packed, self.max_s]


def single(row: Utterance) -> Window:
    return Window((row,))


def seeded_rng(seed: int, *keys) -> np.random.Generator:
    """A generator seeded by `seed` and `keys` alone, so one window's (or call's) draws never move another's."""
    digest = hashlib.blake2b("/".join(map(str, (seed, *keys))).encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest))


def groups(rows: Sequence[Utterance], by: str, seed: int) -> list[list[Utterance]]:
    """Utterances that may share a window, in window order: each session's in manifest order
    (utterances without a session alone), or each category's in a seeded order."""
    found: dict[object, list[Utterance]] = {}
    for row in rows:
        key = (row.get("session") or ("", row["id"])) if by == "session" else row.get("category") or ""
        found.setdefault(key, []).append(row)
    if by == "category":
        for key, members in found.items():
            order = seeded_rng(seed, "category", key).permutation(len(members))
            found[key] = [members[i] for i in order]
    return list(found.values())


# Windows a category's utterances may still join (first fit): each goes to the first open window
# it fits in. On 20,000 utterances of telephone-like durations (benchmarks/packing.py): 5.98
# utterances a window, 97.7% of 30 s, against 5.52 and 90.1% with one open window. A session keeps
# one, so that its utterances stay in their order.
OPEN_WINDOWS = 8


class _Filling:
    """A window being filled; its gaps are drawn from its own seeded generator, one per part added."""

    def __init__(self, first: dict, pack: Pack, seed: int):
        self.rng = seeded_rng(seed, "window", first["id"])
        self.timestamps = bool(self.rng.random() < pack.timestamps)
        self.parts, self.gaps, self.length = [first], [], first["duration"]
        self.low, self.high = pack.gap_s
        self.gap = self.draw()

    def draw(self) -> float:
        return round(float(self.rng.uniform(self.low, self.high)), 3)

    def fits(self, row: Utterance, max_s: float) -> bool:
        return self.length + self.gap + row["duration"] <= max_s

    def add(self, row: Utterance) -> None:
        self.parts.append(row)
        self.gaps.append(self.gap)
        self.length += self.gap + row["duration"]
        self.gap = self.draw()


def windows(rows: Sequence[dict], pack: Pack, seed: int, open_windows: int = OPEN_WINDOWS) -> list[Window]:
    """Every utterance of `rows` in a packed window of up to `pack.max_s`, a seeded gap before each
    but the first: a session's consecutive utterances in their order, a category's in its seeded
    order, each into the first of the last OPEN_WINDOWS windows it fits in. An utterance longer than
    `max_s` has a window of its own."""
    limit = 1 if pack.by == "session" else open_windows
    done = []
    for group in groups(rows, pack.by, seed):
        filling: list[_Filling] = []
        for row in group:
            target = next((w for w in filling if w.fits(row, pack.max_s)), None)
            if target:
                target.add(row)
                continue
            if len(filling) == limit:
                done.append(filling.pop(0))
            filling.append(_Filling(row, pack, seed))
        done += filling
    return [Window(tuple(w.parts), tuple(w.gaps), w.timestamps, packed=True, max_s=pack.max_s) for w in done]


def singles(rows: Sequence[dict], share: float, seed: int) -> list[Window]:
    """The seeded `share` of `rows` that also trains as windows of one utterance (short-form)."""
    if share >= 1:
        return [single(row) for row in rows]
    return [single(row) for row in rows if seeded_rng(seed, "single", row["id"]).random() < share]


def fit(
    lengths: Sequence[int], first: Sequence[int], later: Sequence[int], gaps: Sequence[float], max_s: float, room: int
) -> list[int]:
    """Where a window's usable parts are cut into windows that fit: the index of each piece's first
    part. Part i takes `lengths[i]` samples, and `first[i]` label tokens as a piece's first part or
    `later[i]` after another (its leading space); `gaps[i - 1]` seconds of silence precede it.
    `room`: label tokens a piece may hold besides its prefix and end of text. A part alone always
    makes a piece: its own checks (30 s, label length) were made before."""
    limit = min(round(max_s * SAMPLE_RATE), N_SAMPLES)
    starts, samples, count = [], 0, 0
    for i, length in enumerate(lengths):
        gap = round(gaps[i - 1] * SAMPLE_RATE) if i else 0
        if starts and samples + gap + length <= limit and count + later[i] <= room:
            samples += gap + length
            count += later[i]
            continue
        starts.append(i)
        samples, count = length, first[i]
    return starts


def concatenate(waves: Sequence[np.ndarray], gaps: Sequence[float]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The window's audio (parts with zeros between them) and each part's (start, end) in seconds."""
    pieces, spans, at = [], [], 0
    for i, wave in enumerate(waves):
        if i:
            silence = np.zeros(round(gaps[i - 1] * SAMPLE_RATE), dtype=np.float32)
            pieces.append(silence)
            at += len(silence)
        pieces.append(wave)
        spans.append((at / SAMPLE_RATE, (at + len(wave)) / SAMPLE_RATE))
        at += len(wave)
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32), spans
