"""Corpus-level error rates (sum of edits over sum of reference lengths), via jiwer.

Utterances with an empty reference have no defined error rate; they are excluded and counted.
"""

from collections import defaultdict

import jiwer

from whisper_ko.text import SCORING


def edits(reference: str, hypothesis: str, unit: str = "char") -> tuple[int, int]:
    """(edit operations, reference length) of one pair, in characters or words."""
    process = jiwer.process_characters if unit == "char" else jiwer.process_words
    out = process(reference, hypothesis)
    return out.substitutions + out.deletions + out.insertions, out.substitutions + out.deletions + out.hits


def utterance_scores(reference: str, hypothesis: str) -> dict:
    """Edit counts of one utterance, the unit of every aggregate below."""
    reference, hypothesis = SCORING["raw"](reference), SCORING["raw"](hypothesis)
    ref_ns, hyp_ns = SCORING["nospace"](reference), SCORING["nospace"](hypothesis)
    char_edits, chars = edits(reference, hypothesis, "char") if reference else (len(hypothesis), 0)
    ns_edits, ns_chars = edits(ref_ns, hyp_ns, "char") if ref_ns else (len(hyp_ns), 0)
    word_edits, words = edits(reference, hypothesis, "word") if reference.split() else (len(hypothesis.split()), 0)
    return {
        "char_edits": char_edits,
        "chars": chars,
        "nospace_edits": ns_edits,
        "nospace_chars": ns_chars,
        "word_edits": word_edits,
        "words": words,
    }


def aggregate(scored: list[dict]) -> dict:
    """Corpus-level rates over utterances that have a reference (`empty_references` counts the rest)."""
    valid = [s for s in scored if s["chars"] > 0]
    totals = defaultdict(int)
    for s in valid:
        for key in ("char_edits", "chars", "nospace_edits", "nospace_chars", "word_edits", "words"):
            totals[key] += s[key]
    return {
        "cer": _rate(totals["char_edits"], totals["chars"]),
        "cer_nospace": _rate(totals["nospace_edits"], totals["nospace_chars"]),
        "wer": _rate(totals["word_edits"], totals["words"]),
        "n": len(valid),
        "empty_references": len(scored) - len(valid),
        "hours": round(sum(s.get("duration", 0.0) for s in valid) / 3600, 4),
    }


def _rate(errors: int, length: int) -> float:
    return round(errors / length, 6) if length else 0.0


def by_group(scored: list[dict], field: str) -> dict[str, dict]:
    groups = defaultdict(list)
    for s in scored:
        groups[str(s.get(field))].append(s)
    return {name: aggregate(groups[name]) for name in sorted(groups)}
