"""Corpus-level error rates and hallucination indicators, summed from per-utterance counts.

Every rate is corpus-level: the sum of edits over the sum of reference lengths, never a mean of
per-utterance rates. Utterances with an empty reference have no defined error rate and those whose
audio could not be read have no hypothesis; both are excluded and counted (`empty_references`,
`failed`). Text is compared in NFC (via `whisper_ko.text.SCORING`), so Hangul is scored per
syllable, never per jamo.
"""

import re
from collections import defaultdict
from statistics import NormalDist
from typing import NamedTuple

import jiwer
import numpy as np

from whisper_ko.errors import UserError
from whisper_ko.text import SCORING

# kocer's reading rules change between releases; scores are comparable only under one version.
KOCER_VERSION = "0.4.0"

# Counts summed over utterances; every rate below is a ratio of two of these sums.
COUNTS = (
    "char_edits",
    "chars",
    "nospace_edits",
    "nospace_chars",
    "nospace_insertions",
    "word_edits",
    "words",
    "sword_edits",
)

# OpenKoASR's leaderboard averages per-utterance CER after dropping utterances above this rate.
OPENKOASR_OUTLIER = 1.0

# A decoding loop: one character 8+ times in a row (네네네네네네네네) or a longer unit 4+ times
# (그럼그럼그럼그럼). Matched on the no-space form, so spacing cannot hide a loop.
_LOOP = re.compile(r"(.)\1{7,}|(..+?)\2{3,}")


class _Alignment(NamedTuple):
    edits: int
    length: int  # of the reference
    insertions: int


def _align(reference: str, hypothesis: str, unit: str) -> _Alignment:
    # jiwer 4 accepts an empty reference (every hypothesis unit is an insertion).
    process = jiwer.process_characters if unit == "char" else jiwer.process_words
    out = process(reference, hypothesis)
    return _Alignment(
        out.substitutions + out.deletions + out.insertions, out.substitutions + out.deletions + out.hits, out.insertions
    )


def respace(reference: str, hypothesis: str) -> str:
    """The hypothesis with the reference's spacing wherever the two agree character for character
    (space-normalised scoring, sWER): the no-space strings are aligned, and each hypothesis
    character matched to a reference character takes that character's space-or-not before it;
    substituted and inserted characters keep the hypothesis's own."""
    ref_chars, ref_space = _spacing(reference)
    hyp_chars, hyp_space = _spacing(hypothesis)
    if not ref_chars or not hyp_chars:
        return hypothesis
    space = list(hyp_space)
    for chunk in jiwer.process_characters(ref_chars, hyp_chars).alignments[0]:
        if chunk.type == "equal":
            for k in range(chunk.ref_end_idx - chunk.ref_start_idx):
                space[chunk.hyp_start_idx + k] = ref_space[chunk.ref_start_idx + k]
    return "".join((" " if space[j] and j else "") + c for j, c in enumerate(hyp_chars))


def _spacing(text: str) -> tuple[str, list[bool]]:
    """`text` without spaces, and for each of its characters whether a space came before it."""
    chars, spaced, pending = [], [], False
    for c in text:
        if c == " ":
            pending = True
            continue
        chars.append(c)
        spaced.append(pending)
        pending = False
    return "".join(chars), spaced


def has_loop(text: str) -> bool:
    """Whether `text` (no-space form) repeats itself like a decoder stuck in a loop."""
    return _LOOP.search(text) is not None


def utterance_scores(reference: str, hypothesis: str) -> dict:
    """Edit counts and indicator flags of one utterance, the unit of every aggregate below."""
    reference, hypothesis = SCORING["raw"](reference), SCORING["raw"](hypothesis)
    ref_ns, hyp_ns = SCORING["nospace"](reference), SCORING["nospace"](hypothesis)
    chars = _align(reference, hypothesis, "char")
    nospace = _align(ref_ns, hyp_ns, "char")
    words = _align(reference, hypothesis, "word")
    return {
        "char_edits": chars.edits,
        "chars": chars.length,
        "nospace_edits": nospace.edits,
        "nospace_chars": nospace.length,
        "nospace_insertions": nospace.insertions,
        "word_edits": words.edits,
        "words": words.length,
        "sword_edits": _align(reference, respace(reference, hypothesis), "word").edits,
        "empty_output": int(not hyp_ns),
        # A reference that itself repeats (네 네 네 네 네 네 네 네) makes a repeating hypothesis right.
        "loop": int(has_loop(hyp_ns) and not has_loop(ref_ns)),
    }


class ScoringError(UserError):
    """A scorer that cannot run as configured (kocer missing or at another version)."""


def kocer_module():
    """The pinned `kocer` module; run before a benchmark so a missing scorer fails at once."""
    try:
        import kocer
    except ImportError as err:
        raise ScoringError(f"benchmark.kocer needs the kocer package: pip install 'kocer=={KOCER_VERSION}'") from err
    if kocer.__version__ != KOCER_VERSION:
        raise ScoringError(f"kocer {kocer.__version__} is installed; scores are pinned to kocer=={KOCER_VERSION}")
    return kocer


def kocer_scores(raw_label: str, hypothesis: str) -> dict:
    """Reading-equivalence edit counts (`3개` = `세 개`, either side of `(A)/(B)`) against the
    label as written, by the pinned version of PyPI `kocer`."""
    out = kocer_module().measure(raw_label, hypothesis, aihub=True)
    return {"kocer_edits": out.substitutions + out.deletions + out.insertions, "kocer_chars": out.ref_len}


_RATE_COUNTS = {
    "char": ("char_edits", "chars"),
    "nospace": ("nospace_edits", "nospace_chars"),
    "word": ("word_edits", "words"),
}


def utterance_rate(scores: dict, kind: str = "char") -> float | None:
    """One utterance's error rate (`kind` char, nospace or word); None for an empty reference."""
    edits, length = _RATE_COUNTS[kind]
    return round(scores[edits] / scores[length], 4) if scores[length] else None


def aggregate(scored: list[dict], *, resamples: int = 0, seed: int = 0) -> dict:
    """Corpus-level rates over utterances with a reference and a hypothesis.

    Entries are `utterance_scores` dicts (optionally with `duration` and `kocer_scores`), or
    dicts with an `error` key for utterances whose audio failed. With `resamples`, adds a seeded
    95% interval of `cer_nospace` (`rate_interval`).
    """
    failed = sum("error" in s for s in scored)
    valid = usable(scored)
    totals = {key: sum(s[key] for s in valid) for key in COUNTS}
    out = {
        "cer": _rate(totals["char_edits"], totals["chars"]),
        "cer_nospace": _rate(totals["nospace_edits"], totals["nospace_chars"]),
        "wer": _rate(totals["word_edits"], totals["words"]),
        "n": len(valid),
        "hours": round(sum(s.get("duration", 0.0) for s in valid) / 3600, 4),
        "empty_references": len(scored) - failed - len(valid),
        "failed": failed,
        # Hallucination indicators: words the audio never had, runaway outputs, loops, silence.
        "insertion_rate": _rate(totals["nospace_insertions"], totals["nospace_chars"]),
        "share_cer_over_100": _rate(sum(s["nospace_edits"] > s["nospace_chars"] for s in valid), len(valid)),
        "share_loops": _rate(sum(s["loop"] for s in valid), len(valid)),
        "share_empty_output": _rate(sum(s["empty_output"] for s in valid), len(valid)),
    }
    # Two other conventions, for comparison with published numbers only (docs/benchmark.md, "Korean scoring
    # conventions"): OpenKoASR's mean of per-utterance CER without its outliers, and sWER.
    kept = [s["char_edits"] / s["chars"] for s in valid if s["char_edits"] <= OPENKOASR_OUTLIER * s["chars"]]
    out |= {
        "openkoasr_cer": round(sum(kept) / len(kept), 6) if kept else 0.0,
        "openkoasr_dropped": len(valid) - len(kept),
        "swer": _rate(totals["sword_edits"], totals["words"]),
    }
    if valid and all("kocer_chars" in s for s in valid):
        out["kocer"] = _rate(sum(s["kocer_edits"] for s in valid), sum(s["kocer_chars"] for s in valid))
    if resamples and valid:
        low, high = rate_interval(
            [s["nospace_edits"] for s in valid], [s["nospace_chars"] for s in valid], resamples=resamples, seed=seed
        )
        out.update(cer_nospace_ci_low=low, cer_nospace_ci_high=high)
    return out


def usable(scored: list[dict]) -> list[dict]:
    """The entries a rate is defined on: a hypothesis and a non-empty reference."""
    return [s for s in scored if "error" not in s and s["chars"] > 0]


# Up to this many utterances an interval is a percentile bootstrap; above it, the delta method (the
# normal approximation of a ratio of sums). The bootstrap costs resamples × n draws, 10 s at a
# million utterances; at such n the two agree within the bootstrap's own Monte Carlo error (a test
# pins both the switch and the agreement).
BOOTSTRAP_MAX_N = 50_000


def rate_interval(
    edits: list[int], lengths: list[int], *, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """95% interval of the corpus-level rate sum(edits) / sum(lengths), utterances the unit: a
    seeded bootstrap up to BOOTSTRAP_MAX_N of them, the delta method beyond."""
    if interval_method(len(edits)) == "delta method":
        return delta_interval(edits, lengths, level=level)
    return bootstrap_interval(edits, lengths, resamples=resamples, seed=seed, level=level)


def interval_method(n: int) -> str:
    """What `rate_interval` uses over `n` utterances, in words for a report."""
    return "delta method" if n > BOOTSTRAP_MAX_N else "bootstrap"


def bootstrap_interval(
    edits: list[int], lengths: list[int], *, resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the corpus-level rate sum(edits) / sum(lengths)."""
    edits, lengths = np.asarray(edits, dtype=np.float64), np.asarray(lengths, dtype=np.float64)
    rng = np.random.default_rng(seed)
    rates = np.empty(resamples)
    for i in range(resamples):
        pick = rng.integers(0, len(edits), len(edits))
        rates[i] = edits[pick].sum() / max(lengths[pick].sum(), 1.0)
    low, high = np.quantile(rates, [(1 - level) / 2, (1 + level) / 2])
    return round(float(low), 6), round(float(high), 6)


def delta_interval(edits: list[int], lengths: list[int], *, level: float = 0.95) -> tuple[float, float]:
    """Normal interval of sum(edits) / sum(lengths) with the delta method's standard error,
    sqrt(n / (n - 1) · Σ (e_i − r·l_i)²) / Σ l_i: exact in the limit, one pass over the counts."""
    edits, lengths = np.asarray(edits, dtype=np.float64), np.asarray(lengths, dtype=np.float64)
    n, total = len(edits), max(lengths.sum(), 1.0)
    rate = edits.sum() / total
    se = np.sqrt(n / max(n - 1, 1) * np.square(edits - rate * lengths).sum()) / total
    z = NormalDist().inv_cdf((1 + level) / 2)
    return round(float(rate - z * se), 6), round(float(rate + z * se), 6)


def _rate(errors: float, length: float) -> float:
    return round(errors / length, 6) if length else 0.0


def by_group(scored: list[dict], field: str, *, summary=aggregate, **kwargs) -> dict[str, dict]:
    """`summary` (`aggregate`, or another over the same counts) per value of `field`, keyword
    arguments passed on."""
    groups = defaultdict(list)
    for s in scored:
        groups[str(s.get(field))].append(s)
    return {name: summary(groups[name], **kwargs) for name in sorted(groups)}
