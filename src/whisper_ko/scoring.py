"""Scoring transcripts: per-utterance counts and predictions, corpus-level metrics per group with
their bootstrap intervals (`metrics`), whole calls (`long_form`), and the speed of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from whisper_ko import config, long_form, metrics
from whisper_ko.errors import UserError

if TYPE_CHECKING:  # annotations only: scoring starts no worker
    from whisper_ko.scheduling import Transcripts


@dataclass(frozen=True)
class Scoring:
    """How hypotheses are scored and grouped: the params' settings, taken from benchmark by `of`."""

    group_by: tuple[str, ...]  # manifest fields to report per value of
    kocer: bool  # also reading-equivalence CER (metrics.kocer_scores)
    resamples: int  # bootstrap resamples of the cer_nospace interval (0: none)
    seed: int

    @classmethod
    def of(cls, settings: config.Benchmark, rows: list[dict]) -> Scoring:
        """Scoring as the params say, by category and benchmark.group_by's fields (each one some of `rows` has)."""
        return cls(group_fields(rows, settings.group_by), settings.kocer, settings.bootstrap_resamples, settings.seed)


@dataclass
class Result:
    metrics: dict  # quality: {"overall": {...}, "by_<field>": {group: {...}}}, numbers only
    predictions: list[dict]  # per utterance, in manifest order
    transcripts: Transcripts
    speed: dict = field(default_factory=dict)  # `speed`: varies from run to run, kept apart from quality
    scored: list[dict] = field(default_factory=list)  # per-utterance counts (metrics.utterance_scores)


def subset(rows: list[dict], max_samples: int | None, seed: int) -> list[dict]:
    """A seeded subset in manifest order (the same utterances for every model)."""
    if not max_samples or max_samples >= len(rows):
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), max_samples, replace=False))
    return [rows[i] for i in keep]


def group_fields(rows: list[dict], extra: list[str]) -> tuple[str, ...]:
    """`category` plus the requested manifest fields; a field no utterance has is an error."""
    fields = tuple(dict.fromkeys(["category", *extra]))
    present = set().union(*(row.keys() for row in rows))
    missing = [f for f in fields if f not in present]
    if missing:
        raise UserError(f"benchmark.group_by: no test utterance has {missing}; fields: {sorted(present)}")
    return fields


def score(rows: list[dict], found: Transcripts, scoring: Scoring) -> tuple[dict, list[dict], list[dict]]:
    """Metrics (overall, and per group of each `group_by` field), per-utterance predictions and
    per-utterance scores."""
    scored, predictions = [], []
    for i, row in enumerate(rows):
        hypothesis = found.hypotheses[i]
        groups = {name: row.get(name) for name in scoring.group_by}
        if hypothesis is None:
            scored.append({**groups, "error": found.errors[i]})
            predictions.append({**prediction(row, None), "error": found.errors[i]})
            continue
        scores = found.counts[i] if found.counts else utterance_counts(row, hypothesis, scoring.kocer)
        scored.append({**scores, **groups, "duration": row["duration"]})
        predictions.append(
            {
                **prediction(row, hypothesis),
                "cer": metrics.utterance_rate(scores),
                "cer_nospace": metrics.utterance_rate(scores, "nospace"),
            }
        )
    table = {"overall": metrics.aggregate(scored, resamples=scoring.resamples, seed=scoring.seed)}
    for name in scoring.group_by:
        table[f"by_{name}"] = metrics.by_group(scored, name, resamples=scoring.resamples, seed=scoring.seed)
    return table, predictions, scored


def score_calls(calls: list[dict], found: Transcripts, scoring: Scoring) -> tuple[dict, list[dict], list[dict]]:
    """Metrics of whole calls (overall and per category), per-call predictions with their segments,
    and per-call counts."""
    scored, predictions = [], []
    for i, call in enumerate(calls):
        out = found.hypotheses[i]
        entry = {"id": call["id"], "category": call["category"], "duration": call["duration"]}
        if out is None:
            scored.append({"category": call["category"], "error": found.errors[i]})
            predictions.append({**entry, "reference": call["text"], "hypothesis": None, "error": found.errors[i]})
            continue
        counts = {**(found.counts[i] if found.counts else long_form.score(call, out)), "category": call["category"]}
        scored.append(counts)
        predictions.append(
            {
                **entry,
                "utterances": call["utterances"],
                "reference": call["text"],
                "hypothesis": out["text"],
                "cer": metrics.utterance_rate(counts),
                "cer_nospace": metrics.utterance_rate(counts, "nospace"),
                **{k: counts[k] for k in ("loop", "capped", "fallback", "monotonic", "within")},
                "speech_covered": round(counts["covered_s"] / counts["speech_s"], 4) if counts["speech_s"] else None,
                "reference_spans": call["spans"],
                "segments": out["segments"],
            }
        )
    kwargs = {"resamples": scoring.resamples, "seed": scoring.seed}
    table = {
        "overall": long_form.aggregate(scored, **kwargs),
        "by_category": metrics.by_group(scored, "category", summary=long_form.aggregate, **kwargs),
    }
    return table, predictions, scored


def utterance_counts(row: dict, hypothesis: str, kocer: bool = False) -> dict:
    """An utterance's edit counts (and reading-equivalence counts with `kocer`): what `score` sums."""
    counts = metrics.utterance_scores(row["text"], hypothesis)
    if kocer:
        counts.update(metrics.kocer_scores(row["raw_text"], hypothesis))
    return counts


def prediction(row: dict, hypothesis: str | None) -> dict:
    return {
        "id": row["id"],
        "category": row.get("category"),
        "duration": row["duration"],
        "reference": row["text"],
        "raw_text": row.get("raw_text"),
        "hypothesis": hypothesis,
    }


def speed(rows: list[dict], found: Transcripts) -> dict:
    """Samples/s and RTFx of the node (over the slowest worker's wall time) and RTFx per device
    (audio over decoding time, summed over workers: the Open ASR Leaderboard's figure for one device).
    Model load and warm-up are excluded from both; peak memory is the largest worker's."""
    wall = max((t.wall_s for t in found.timings), default=0.0)
    decode = sum(t.decode_s for t in found.timings)
    audio_s = sum(row["duration"] for row in rows)
    return {
        "wall_s": round(wall, 2),
        "samples_per_s": round(len(rows) / wall, 2) if wall else 0.0,
        "rtfx": round(audio_s / wall, 2) if wall else 0.0,
        "rtfx_per_device": round(audio_s / decode, 2) if decode else 0.0,
        "worker_peak_rss_mb": round(found.peak_rss_mb),
    }
