"""Whole calls, as a deployment transcribes them: the benchmark's long-form track.

AI Hub's telephone set is cut into utterances for training, but a deployed model hears a call.
Each test session becomes a call: its utterances in manifest order with a seeded silence between
them, put together by the training windows' own assembly (`packing.concatenate`); its reference is
their normalised texts joined by a space. The benchmark decodes it sequentially (30-s windows moved
along by the timestamps the model predicts) and, for CTranslate2 models, in faster-whisper's VAD
chunks too, and scores each call as one unit: CER, loops, windows that ran to the token cap, and
whether its timestamps can be used (in order, inside the call, covering its speech).
"""

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np

from whisper_ko import audio, metrics, packing
from whisper_ko.dims import TIME_PRECISION
from whisper_ko.manifest import Utterance

# Segments in order: the next may start one timestamp step before the last ended, no more.
_STEP = TIME_PRECISION
# Inside the call: Whisper puts a boundary within a few tenths of a second of the truth (median
# 0.06-0.25 s on packed windows, docs/packing.md); a segment ending later than this past the
# audio has a timestamp the audio never had.
_SLACK_S = 0.5


def calls(rows: Sequence[Utterance], gap_s: Sequence[float], seed: int) -> list[dict]:
    """One call per session of `rows` (manifest order kept; an utterance without a session is a call
    of its own): its audio as (paths, gaps), its duration, reference, category, and where each
    utterance lies in it (`spans`, seconds, from the manifest's durations)."""
    found = []
    for parts in packing.groups(rows, "session", seed):
        rng = packing.seeded_rng(seed, "call", parts[0]["id"])
        low, high = gap_s
        gaps = tuple(round(float(rng.uniform(low, high)), 3) for _ in parts[1:])
        spans, at = [], 0.0
        for part, gap in zip(parts, (0.0, *gaps), strict=True):
            at += gap
            spans.append([round(at, 4), round(at + part["duration"], 4)])
            at += part["duration"]
        first = parts[0]
        found.append(
            {
                "id": first.get("session") or first["id"],
                "category": first.get("category"),
                "audio": (tuple(part["audio"] for part in parts), gaps),
                "duration": round(at, 4),
                "text": " ".join(part["text"] for part in parts),
                "utterances": [part["id"] for part in parts],
                "spans": spans,
            }
        )
    return found


def read(source) -> np.ndarray:
    """16 kHz mono audio of an utterance (its path) or of a call (its paths and the gaps between)."""
    if isinstance(source, (str, Path)):
        return audio.load(source)
    paths, gaps = source
    return packing.concatenate([audio.load(path) for path in paths], gaps)[0]


def read_all(sources: Sequence) -> tuple[list[np.ndarray], list[int], dict[int, str]]:
    """The audio of each source that could be read, their positions, and why the others could not."""
    waves, ok, errors = [], [], {}
    for i, source in enumerate(sources):
        try:
            waves.append(read(source))
            ok.append(i)
        except audio.AudioError as err:
            errors[i] = str(err)
    return waves, ok, errors


def output(segments: list[tuple[float, float, str]], capped: int, fallback: int | None) -> dict:
    """A decoded call: its text (the segments' texts joined), the segments (start, end, text),
    windows that stopped at the token cap, and segments decoded again at a higher temperature
    (None where the engine does not say)."""
    text = " ".join(t for _, _, t in segments if t)
    return {"text": text, "segments": [list(s) for s in segments], "capped": capped, "fallback": fallback}


def health(segments: Sequence[Sequence], spans: Sequence[Sequence[float]], duration: float) -> dict:
    """Whether a call's timestamps can be used: every segment ends after it starts and no earlier
        than the one before it ended (`monotonic`), all lie inside the call, give or take half a second
    (`within`), and how many
        seconds of its speech (the utterances' spans) some segment covers (`covered_s`, of `speech_s`)."""
    times = [(float(s[0]), float(s[1])) for s in segments]
    monotonic = all(start <= end for start, end in times) and all(
        later[0] >= earlier[1] - _STEP for earlier, later in pairwise(times)
    )
    within = all(start >= -_STEP and end <= duration + _SLACK_S for start, end in times)
    merged: list[list[float]] = []
    for start, end in sorted(times):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    covered = sum(max(0.0, min(b, e) - max(a, s)) for a, b in spans for s, e in merged)
    return {
        "monotonic": int(monotonic),
        "within": int(within),
        "covered_s": round(covered, 3),
        "speech_s": round(sum(b - a for a, b in spans), 3),
    }


def score(call: dict, found: dict) -> dict:
    """One call's counts: the utterance counts of `metrics.utterance_scores` on the whole call,
    its timestamp health, token-cap hits and fallback segments."""
    return {
        **metrics.utterance_scores(call["text"], found["text"]),
        **health(found["segments"], call["spans"], call["duration"]),
        "segments": len(found["segments"]),
        "capped": found["capped"],
        "fallback": found["fallback"],
        "utterances": len(call["utterances"]),
        "duration": call["duration"],
    }


def aggregate(scored: list[dict], *, resamples: int = 0, seed: int = 0) -> dict:
    """`metrics.aggregate` over calls (corpus-level CER, its interval, loops, insertions), and:
    calls with a window stopped by the token cap, calls whose timestamps are in order and inside
    the call, the share of speech their segments cover, and segments decoded again at a higher
    temperature where the engine says."""
    out = metrics.aggregate(scored, resamples=resamples, seed=seed)
    valid = metrics.usable(scored)
    if not valid:
        return out
    n = len(valid)
    out |= {
        "share_capped": round(sum(s["capped"] > 0 for s in valid) / n, 6),
        "share_monotonic": round(sum(s["monotonic"] for s in valid) / n, 6),
        "share_within": round(sum(s["within"] for s in valid) / n, 6),
        "speech_covered": round(sum(s["covered_s"] for s in valid) / max(sum(s["speech_s"] for s in valid), 1e-9), 6),
        "segments_per_utterance": round(sum(s["segments"] for s in valid) / sum(s["utterances"] for s in valid), 4),
    }
    if all(s["fallback"] is not None for s in valid):
        out["share_fallback_segments"] = round(
            sum(s["fallback"] for s in valid) / max(sum(s["segments"] for s in valid), 1), 6
        )
    return out
