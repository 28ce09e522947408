"""Label token ids of a training window.

One utterance: `<|startoftranscript|><|ko|><|transcribe|><|notimestamps|> text <|endoftext|>`.
A packed window without timestamps: the same prefix and its texts joined by a space. With
timestamps, Whisper's pre-training format: no `<|notimestamps|>`, and each text between its start
and end time (`<|0.00|> text <|4.52|><|4.80|> text <|9.10|>`, 0.02 s steps). The texts' tokens are
the same in both forms: decoded without the timestamps, a window reads as its joined texts.
"""

from dataclasses import dataclass

from transformers import WhisperTokenizer

from whisper_ko.dims import TIME_PRECISION

PREFIX_TOKENS = 4  # <|startoftranscript|><|ko|><|transcribe|><|notimestamps|>


def load_tokenizer(model: str, language: str = "ko", task: str = "transcribe") -> WhisperTokenizer:
    """The model's tokenizer with the language/task prefix set (no timestamps)."""
    tokenizer = WhisperTokenizer.from_pretrained(model)
    lang_token = f"<|{language}|>"
    if tokenizer.convert_tokens_to_ids(lang_token) in (None, tokenizer.unk_token_id):
        raise ValueError(f"{model}: tokenizer has no {lang_token} token; it cannot be trained on {language!r}")
    tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)
    return tokenizer


@dataclass(frozen=True)
class Text:
    """A text's tokens first in a window, and after another text (with the joining space)."""

    first: list[int]
    later: list[int]


def encode(tokenizer: WhisperTokenizer, texts: list[str]) -> list[list[int]]:
    """The label ids of each text as a window of its own."""
    return [window_ids(tokenizer, [text]) for text in tokens(tokenizer, texts)]


def tokens(tokenizer: WhisperTokenizer, texts: list[str]) -> list[Text]:
    """Each text's tokens in both positions; batched calls, a third cheaper per text than one call each.
    Whisper's byte-level BPE splits before each space, so a window's joined text tokenises as the
    concatenation of these."""
    first = tokenizer(texts, add_special_tokens=False).input_ids
    later = tokenizer([" " + text for text in texts], add_special_tokens=False).input_ids
    return [Text(a, b) for a, b in zip(first, later, strict=True)]


def timestamp_id(tokenizer: WhisperTokenizer, seconds: float) -> int:
    return tokenizer.convert_tokens_to_ids("<|0.00|>") + round(seconds / TIME_PRECISION)


def window_ids(
    tokenizer: WhisperTokenizer, texts: list[Text], spans: list[tuple[float, float]] | None = None
) -> list[int]:
    """The label ids of a window of `texts`; with `spans` (each text's start and end in seconds),
    timestamped."""
    prefix = tokenizer.prefix_tokens  # ends with <|notimestamps|> (load_tokenizer)
    body = [t for i, text in enumerate(texts) for t in (text.later if i else text.first)]
    if spans is None:
        return [*prefix, *body, tokenizer.eos_token_id]
    ids = prefix[:-1]
    for i, (text, (start, end)) in enumerate(zip(texts, spans, strict=True)):
        ids += [timestamp_id(tokenizer, start), *(text.later if i else text.first), timestamp_id(tokenizer, end)]
    return [*ids, tokenizer.eos_token_id]


def window_length(texts: list[Text], timestamped: bool) -> int:
    """len(window_ids(...)) without building it: prefix, texts, two timestamps each, end of text."""
    body = sum(len(text.later if i else text.first) for i, text in enumerate(texts))
    return PREFIX_TOKENS - timestamped + body + 2 * timestamped * len(texts) + 1
