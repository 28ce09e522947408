"""Korean transcript normalisation (ETRI / AI Hub notation) and scoring normalisers.

`normalize` turns a label as written in the corpus into the text a model learns and is scored
against; training targets and benchmark references both come from it (via the manifest's `text`).
The scoring normalisers in `SCORING` are separate functions that never call `normalize`, so
changing how we score can never silently change what we train on, and vice versa.

Notation handled by `normalize` (KsponSpeech / AI Hub transcription rules):

    (70%)/(칠십 퍼센트)  (3)(삼)     dual transcription → the chosen side
    ((xx))  ((그))                   masked or inaudible span → label skipped, or span removed
    b/ l/ o/ n/ u/ i/  (any case)    breath, laughter, overlap, noise, unintelligible → removed
    어/  음/,                        filler → kept without its slash, or dropped
    모+ 몬   *좋아                    repetition / unclear-pronunciation marks → mark removed
    @웃음 @이름1 &이름& (NO:) (SN:…)  tags and masking of other AI Hub sets → removed

Decisions where the notation is ambiguous:

- The spelling side of a dual is copied verbatim: it is where content symbols live (`C++`,
  `+82-10-…`, `1/2`, `*114`, `www.…`), so markup rules never run inside it. The pronunciation
  side is Hangul and gets the same markup cleaning as plain text.
- Parentheses are never repaired. Every repair we considered (closing `(70%)/(칠십 퍼센트`,
  pairing `(3시/(세 시)`, reading `네 (웃음) 맞아요` as an aside) needs a guess about where a
  span ends or what it means, so anything in parentheses that is not a dual, a masked span or a
  `(XX:…)` tag is `malformed_notation`; so is a dual with an empty side. A slash-less dual must
  be written `(A)(B)`: `(A) (B)` could be two asides. Whether a label is rejected never depends
  on `side`.
- Markers only match where they cannot be content: a noise tag never follows a Latin letter or a
  slash (`club/`, `Bob/`, `1/n`, `/data/b/`) nor precedes a Latin letter, digit or slash (`A/S`,
  `I/O`, `b/2`); a filler is a whole Hangul word followed by `/` and then a space, punctuation or
  the end (`사과/배` and `3월/4월` are content); URLs are left untouched; `+` is a repetition
  mark only right after Hangul or a dual (`1+1` stays); `*` outside a spelling side is always
  the unclear mark.
"""

import re
import unicodedata
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

SIDES = ("spelling", "pronunciation")
FILLER_POLICIES = ("keep", "drop")
MASKED_POLICIES = ("drop", "remove")


class TranscriptError(ValueError):
    """A label that cannot (or by policy must not) become a training target; `reason` names why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# Invisible format characters that survive NFC and would silently split tokens: soft hyphen,
# zero-width space/joiners, direction marks, word joiner, BOM.
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u2060\ufeff]")
# Control characters other than tab and line breaks (NUL, BEL, ESC, DEL, C1): never a word, they
# mean a label in another codec or a damaged file, and would become tokens of the target.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")

# One left-to-right pass over all notation. Order matters: URLs and whole parenthesised
# constructs are consumed before their insides can be mistaken for markers, and a parenthesis
# left over after masked spans, tags and duals is malformed. Each branch starts with a plain
# character or class outside its group so the engine can reject it on the first character (3x
# faster than starting with a group or lookbehind); lookbehinds therefore sit after that first
# character and look one further back.
_NOTATION = re.compile(
    r"""
    [a-zA-Z] (?P<url> (?i: [a-z0-9+.-]*:// ) [^\s()]* )
    | [wW] (?P<www> (?i: ww\. ) [^\s()]* )
    | \( (?P<masked> \( [^()]* \)\) )
    | \( (?P<tag> [A-Z]{2,}: [^()]* \) )
    | \( (?P<dual> (?P<spelling>[^()]*) \) (?: \s*/\s* )? \( (?P<pronunciation>[^()]*) \) )
    | [()] (?P<paren>)
    | [bBlLoOnNuUiI] (?<![A-Za-z/].) (?P<event> / (?![A-Za-z0-9/]) )
    | [가-힣ㄱ-ㆎ] (?<![\w/].) (?P<filler> [가-힣ㄱ-ㆎ]* / (?![\w/]) ,? )
    | @ (?<![A-Za-z0-9._%+-]@) (?P<at_tag> [가-힣]+ [0-9]* )
    | & (?P<amp_tag> [^&\s()]+ & )
    | \+ (?<=[가-힣)]\+) (?P<repeat>)
    | \* (?P<unclear>)
    """,
    re.VERBOSE,
)
# Every notation needs one of these; a label without any skips the pass.
_NOTATION_CHAR = re.compile(r"[()/+*@&]")
# Removing a marker before `.`/`?` leaves `그게 .`; Whisper-style text has no space there.
_SPACE_BEFORE_PUNCT = re.compile(r" (?=[,.?!]+(?: |$))")


class _Policy(NamedTuple):
    side: str
    fillers: str
    masked: str
    raw: str


def normalize(
    raw: str,
    side: str = "spelling",
    fillers: str = "keep",
    *,
    masked: str = "drop",
) -> str:
    """Label as written → target text ("" if nothing is left). Raises `TranscriptError`
    (reason `masked_span`, `malformed_notation` or `control_characters`) for labels to skip."""
    _check_choice("side", side, SIDES)
    _check_choice("fillers", fillers, FILLER_POLICIES)
    _check_choice("masked", masked, MASKED_POLICIES)
    control = _CONTROL.search(raw)
    if control:
        raise TranscriptError("control_characters", f"control character {control[0]!r} in {raw!r}")
    text = _canonical(raw)
    text = _rewrite_notation(text, _Policy(side, fillers, masked, raw))
    return _SPACE_BEFORE_PUNCT.sub("", " ".join(text.split()))


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _canonical(text: str) -> str:
    # Invisible characters go first: one between conjoining jamo would block NFC composition.
    return unicodedata.normalize("NFC", _INVISIBLE.sub("", text))


def _rewrite_notation(text: str, policy: _Policy) -> str:
    if not _NOTATION_CHAR.search(text):
        return text
    return _NOTATION.sub(partial(_rewrite_match, policy), text)


def _rewrite_match(policy: _Policy, match: re.Match) -> str:
    return _REWRITES[match.lastgroup](match, policy)


def _keep(match: re.Match, policy: _Policy) -> str:
    return match[0]


def _remove(match: re.Match, policy: _Policy) -> str:
    # A space, not "", so a tag glued between two words (`네l/그럼`) cannot merge them.
    return " "


def _delete(match: re.Match, policy: _Policy) -> str:
    return ""


def _masked_span(match: re.Match, policy: _Policy) -> str:
    if policy.masked == "drop":
        raise TranscriptError("masked_span", f"masked span {match[0]!r} in {policy.raw!r}")
    return " "


def _dual(match: re.Match, policy: _Policy) -> str:
    spelling, pronunciation = match["spelling"].strip(), match["pronunciation"].strip()
    if not spelling or not pronunciation:
        raise _malformed(f"dual transcription with an empty side {match[0]!r}", policy)
    if policy.side == "spelling":
        return spelling
    return _rewrite_notation(pronunciation, policy)


def _stray_parenthesis(match: re.Match, policy: _Policy) -> str:
    raise _malformed(f"{match[0]!r} at {match.start()} is not part of a dual, masked span or tag", policy)


def _malformed(what: str, policy: _Policy) -> TranscriptError:
    return TranscriptError("malformed_notation", f"{what} in {policy.raw!r}")


def _filler(match: re.Match, policy: _Policy) -> str:
    if policy.fillers == "keep":
        return match[0].replace("/", "")
    return " "  # a comma after it only set the filler off, so it goes too


_REWRITES: dict[str, Callable[[re.Match, _Policy], str]] = {
    "url": _keep,
    "www": _keep,
    "masked": _masked_span,
    "tag": _remove,
    "dual": _dual,
    "paren": _stray_parenthesis,
    "event": _remove,
    "filler": _filler,
    "at_tag": _remove,
    "amp_tag": _remove,
    "repeat": _delete,
    "unclear": _delete,
}


# ---------------------------------------------------------------- scoring normalisers
#
# Applied to both reference and hypothesis at scoring time only. NFC, never NFKD: decomposing
# Hangul into jamo would turn one-syllable errors into several jamo edits.

# Symbols that are read aloud as words (퍼센트, 골뱅이, 샵, 앤) are content, not punctuation.
_SPOKEN_SYMBOLS = frozenset("%@#&")


def as_written(text: str) -> str:
    """Scoring form `raw`: the text as is, only NFC and whitespace collapsed to single spaces."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def nospace(text: str) -> str:
    """Scoring form `nospace` (the Korean convention): NFC, whitespace and punctuation removed,
    because Korean spacing and punctuation are inconsistent between transcribers."""
    return "".join(ch for ch in unicodedata.normalize("NFC", text) if _is_scored(ch))


def _is_scored(ch: str) -> bool:
    if ch.isspace():
        return False
    return ch in _SPOKEN_SYMBOLS or not unicodedata.category(ch).startswith("P")


class _Registry(dict):
    def __missing__(self, name):
        raise KeyError(f"unknown scoring normaliser {name!r}; known: {sorted(self)}")


# Name → function, so the benchmark can be configured by name.
SCORING: dict[str, Callable[[str], str]] = _Registry(raw=as_written, nospace=nospace)
