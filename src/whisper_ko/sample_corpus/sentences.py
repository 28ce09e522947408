"""Sentences from the bank: slot filling, AI Hub notation, and noise/filler markers.

A sentence is kept as words, each word a tuple of segments `(label, spelling, spoken)`: plain
text is the same on all three sides, a dual transcription `(3시)/(세 시)` keeps its spelling and
its pronunciation, a tag `n/` is label-only, and a filler `어/` is spoken as `어`.
"""

import re
import string
from dataclasses import dataclass

import numpy as np

from .bank import DOMAINS, NAMES, SHARED
from .readings import SLOTS, choice_of

DUAL = re.compile(r"\(([^()]*)\)/\(([^()]*)\)")
TAGS = ["n/", "b/", "o/", "l/"]
GLUED_TAGS = ["l/", "n/", "b/"]
FILLERS = ["어/", "음/", "아/"]
MARKED_SHARE = 0.4  # real labels carry a tag or filler in a large share of utterances

Segment = tuple[str, str, str]  # (label, spelling, spoken)
Word = tuple[Segment, ...]


@dataclass(frozen=True)
class Sentence:
    words: tuple[Word, ...]

    @property
    def label(self) -> str:
        return self._side(0)

    @property
    def spelling(self) -> str:
        return self._side(1)

    @property
    def spoken(self) -> str:
        return self._side(2)

    def _side(self, index: int) -> str:
        words = ("".join(segment[index] for segment in word) for word in self.words)
        return " ".join(word for word in words if word)

    @property
    def tags(self) -> list[tuple[int, str]]:
        """(word index, tag) for every noise/event tag, to place matching sounds in the audio."""
        return [(i, seg[0]) for i, word in enumerate(self.words) for seg in word if seg[0] in TAGS]


def parse(notation: str) -> Sentence:
    """Split a label written in AI Hub notation into words of segments."""
    words: list[list[Segment]] = [[]]
    position = 0
    for match in DUAL.finditer(notation):
        _add_plain(words, notation[position : match.start()])
        words[-1].append((match.group(0), match.group(1), match.group(2)))
        position = match.end()
    _add_plain(words, notation[position:])
    return Sentence(tuple(tuple(word) for word in words if word))


def _add_plain(words: list[list[Segment]], text: str) -> None:
    # text before the first space continues the current word: `(3시)/(세 시)에` is one word
    for index, piece in enumerate(text.split(" ")):
        if index > 0:
            words.append([])
        if piece:
            words[-1].append((piece, piece, piece))


def slots_for(domain: str) -> dict:
    lexicon = {name: choice_of(items) for name, items in DOMAINS[domain]["lexicon"].items()}
    return {**SLOTS, "name": choice_of(NAMES), **lexicon}


def fill(template: str, slots: dict, rng: np.random.Generator) -> Sentence:
    parts = []
    for literal, field, _, _ in string.Formatter().parse(template):
        parts.append(literal)
        if field is not None:
            parts.append(slots[field](rng))
    return parse("".join(parts))


def add_markers(sentence: Sentence, rng: np.random.Generator) -> Sentence:
    """Give a share of sentences a tag or filler the way transcribers write them."""
    if rng.random() >= MARKED_SHARE:
        return sentence
    words = list(sentence.words)
    for _ in range(1 + int(rng.random() < 0.25)):
        kind = int(rng.integers(4))
        if kind == 0:  # standalone tag at the start: `n/ 네 ...`
            words.insert(0, (_tag(_pick(rng, TAGS)),))
        elif kind == 1:  # tag glued to a plain word: `네l/`, never to a filler or another tag
            plain = [i for i, word in enumerate(words) if word[-1][0] == word[-1][2]]
            index = plain[rng.integers(len(plain))]
            words[index] = words[index] + (_tag(_pick(rng, GLUED_TAGS)),)
        elif kind == 2:  # filler opening the turn: `어/ 그게요`
            words.insert(0, (_filler(_pick(rng, FILLERS)),))
        else:  # filler between words
            words.insert(int(rng.integers(1, len(words) + 1)), (_filler(_pick(rng, FILLERS[:2])),))
    return Sentence(tuple(words))


def _tag(tag: str) -> Segment:
    return (tag, "", "")


def _filler(filler: str) -> Segment:
    return (filler, filler[:-1], filler[:-1])


def _pick(rng: np.random.Generator, items: list[str]) -> str:
    return items[rng.integers(len(items))]


def tags_only() -> Sentence:
    """A label holding nothing but event tags: it normalises to an empty transcript."""
    return Sentence(((_tag("n/"),), (_tag("b/"),)))


def templates(domain: str, subcategory: str, role: str) -> tuple[list[str], list[str]]:
    """Turn templates for a speaker role ("opening", "closing", "counsellor" or "customer"): those
    training may say, and those reserved for the test side (the last of each list in the bank), so
    that the test measures listening to sentences never heard as well as remembering."""
    if role in ("opening", "closing"):
        lists = [SHARED[role]]
    else:
        own = DOMAINS[domain]["subcategories"][subcategory][role]
        lists = [own, SHARED["customer"]] if role == "customer" else [own]
    return [t for pool in lists for t in pool[:-1]], [pool[-1] for pool in lists]


def training_texts(fillings: int = 3) -> list[str]:
    """Every bank sentence without notation, spelling and pronunciation sides, for tokenizers."""
    rng = np.random.default_rng(0)
    lines = []
    for domain in sorted(DOMAINS):
        slots = slots_for(domain)
        for subcategory in sorted(DOMAINS[domain]["subcategories"]):
            for role in ("opening", "counsellor", "customer", "closing"):
                for template in sum(templates(domain, subcategory, role), []):
                    for _ in range(fillings):
                        sentence = fill(template, slots, rng)
                        lines += [sentence.spelling, sentence.spoken]
    return list(dict.fromkeys(lines))
