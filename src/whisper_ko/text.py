"""Korean transcript normalisation (ETRI / AI Hub notation) and scoring normalisers.

`normalize` turns a label as written in the corpus into the text a model should learn and be
scored against; training targets and benchmark references both come from it (via the manifest's
`text`). The scoring normalisers (`nospace`) are separate so that changing how we score can never
silently change what we train on.
"""

import re
import unicodedata

SIDES = ("spelling", "pronunciation")
FILLER_POLICIES = ("keep", "drop")
MASKED_POLICIES = ("drop", "remove")


class TranscriptError(ValueError):
    """A label that cannot (or by policy must not) become a training target; `reason` names why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# `(70%)/(칠십 퍼센트)` and the slash-less `(70%)(칠십 퍼센트)` seen in the 571 set.
_DUAL = re.compile(r"\(([^()]*)\)\s*/?\s*\(([^()]*)\)")
_MASKED = re.compile(r"\(\([^()]*\)\)")
# `(NO:)`, `(SN:)`, `(SN:홍길동)`: annotation tags of other AI Hub sets.
_TAG = re.compile(r"\([A-Z]{2,}:[^()]*\)")
# `@웃음`, `@이름1`, `&이름&`.
_AT_TAG = re.compile(r"@[^\s@]+")
_AMP_TAG = re.compile(r"&[^&\s]+&")
# Noise/event tags, standalone or glued to the end of a word (`그냥l/`), never inside a Latin word
# (`club/`) and never part of a longer slash run.
_EVENT = re.compile(r"(?<![A-Za-z/])[bBlLoOnNuUiI]/(?![/A-Za-z0-9])")
_FILLER = re.compile(r"([가-힣]+)/(?!/)")
_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|www\.)", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def normalize(
    raw: str,
    side: str = "spelling",
    fillers: str = "keep",
    *,
    masked: str = "drop",
) -> str:
    """Label as written → target text. Raises `TranscriptError` for labels to skip."""
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    if fillers not in FILLER_POLICIES:
        raise ValueError(f"fillers must be one of {FILLER_POLICIES}, got {fillers!r}")
    if masked not in MASKED_POLICIES:
        raise ValueError(f"masked must be one of {MASKED_POLICIES}, got {masked!r}")

    text = unicodedata.normalize("NFC", raw).replace("\ufeff", "")
    if _MASKED.search(text):
        if masked == "drop":
            raise TranscriptError("masked_span", f"label has a masked span ((…)): {raw!r}")
        text = _MASKED.sub(" ", text)
    text = _TAG.sub(" ", text)
    pick = 1 if side == "spelling" else 2
    text = _DUAL.sub(lambda m: m.group(pick), text)
    if "(" in text or ")" in text:
        raise TranscriptError("malformed_notation", f"unbalanced or nested parentheses: {raw!r}")
    text = " ".join(_clean_word(word, fillers) for word in text.split())
    return _SPACES.sub(" ", text).strip()


def _clean_word(word: str, fillers: str) -> str:
    if _URL.match(word):
        return word
    word = _EVENT.sub(" ", word)
    word = _AT_TAG.sub(" ", word)
    word = _AMP_TAG.sub(" ", word)
    word = _FILLER.sub(r"\1" if fillers == "keep" else " ", word)
    # `+` marks a repeated fragment and `*` an unclear pronunciation; the words themselves stay.
    return word.replace("+", "").replace("*", "")


def nospace(text: str) -> str:
    """Scoring form used by Korean papers: NFC, whitespace and punctuation removed."""
    text = unicodedata.normalize("NFC", text)
    return "".join(ch for ch in text if not ch.isspace() and not unicodedata.category(ch).startswith("P"))
