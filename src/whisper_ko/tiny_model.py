"""A tiny, randomly initialised Whisper for Korean, built offline in seconds.

The result is laid out exactly like an OpenAI checkpoint on the Hugging Face hub
(config, generation config, safetensors weights, feature extractor, tokenizer with
Whisper's special and timestamp tokens), so every stage of the pipeline can run
end to end on it without network access or a large download.
"""

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import click
import torch
from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from whisper_ko.sample_corpus import training_texts

# WhisperConfig dimensions; any of them can be overridden through build(**size)
DEFAULT_SIZE = {
    "d_model": 64,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 256,
    "decoder_ffn_dim": 256,
}

# OpenAI's order: the ids of the language and task tokens are computed from it
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    *[f"<|{code}|>" for code in LANGUAGES],
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
]

# audio hyperparameters of every Whisper checkpoint
SAMPLING_RATE = 16000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30  # seconds
N_FRAMES = CHUNK_LENGTH * SAMPLING_RATE // HOP_LENGTH  # 3000 mel frames
N_AUDIO_CTX = N_FRAMES // 2  # the encoder's second convolution has stride 2
TIME_PRECISION = CHUNK_LENGTH / N_AUDIO_CTX  # 0.02 s per timestamp token

TIMESTAMP_TOKENS = [f"<|{i * TIME_PRECISION:.2f}|>" for i in range(N_AUDIO_CTX + 1)]
MAX_TARGET_POSITIONS = 448
MAX_INITIAL_TIMESTAMP = 1.0  # seconds, as in OpenAI's decoding options

# an upper bound only (the trainer preallocates it): a corpus of thousands of
# sentences stops well below it
MAX_BPE_VOCAB = 16384

# bump when the built files change for the same parameters
BUILD_FORMAT = 2
BUILD_RECORD = "tiny_model.json"


def common_hangul_syllables() -> list[str]:
    """The 2,350 syllables of KS X 1001, which cover nearly all modern Korean text."""
    # python's euc_kr codec spells the other 8,822 syllables as 8-byte jamo sequences
    return [chr(c) for c in range(0xAC00, 0xD7A4) if len(chr(c).encode("euc_kr")) == 2]


def train_bpe(texts: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE without a prefix space, like Whisper's: any text is encodable."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    # merging stops at pairs seen only once: every common syllable is fed twice so it
    # always becomes one token, and so do the words recurring in texts
    trainer = trainers.BpeTrainer(
        vocab_size=MAX_BPE_VOCAB,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    syllables = common_hangul_syllables()
    bpe.train_from_iterator([*texts, *syllables, *syllables], trainer)
    model = json.loads(bpe.to_str())["model"]
    return model["vocab"], [tuple(merge) for merge in model["merges"]]


def build_tokenizer(texts: list[str]) -> WhisperTokenizer:
    vocab, merges = train_bpe(texts)
    tokenizer = WhisperTokenizer(
        vocab=vocab,
        merges=merges,
        extra_special_tokens=SPECIAL_TOKENS,
        model_max_length=MAX_TARGET_POSITIONS,
        pad_token="<|endoftext|>",  # as OpenAI's: collators that pad labels need one
    )
    # timestamps are not special in OpenAI's tokenizers: transformers locates them
    # as the ids following the last special token
    tokenizer.add_tokens([AddedToken(token, normalized=False) for token in TIMESTAMP_TOKENS])
    return tokenizer


def suppressed_symbols(tokenizer: WhisperTokenizer) -> list[int]:
    """Tokens of symbols that are never spoken, following OpenAI's non_speech_tokens."""
    symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
    symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
    # OpenAI also suppresses the first token of multi-token symbols, but in a small
    # byte-level vocabulary that is a bare byte or a space shared with real text
    ids = set()
    for text in symbols + [" " + symbol for symbol in symbols]:
        tokens = tokenizer.encode(text, add_special_tokens=False)
        if len(tokens) == 1:
            ids.update(tokens)
    return sorted(ids)


def build_generation_config(tokenizer: WhisperTokenizer, config: WhisperConfig) -> GenerationConfig:
    """The fields WhisperGenerationMixin reads from an OpenAI checkpoint."""
    token_id = tokenizer.convert_tokens_to_ids
    eot = token_id("<|endoftext|>")
    # OpenAI never samples these: they only build the prompt or flag silence
    never_sampled = ["<|startoftranscript|>", "<|translate|>", "<|transcribe|>"]
    never_sampled += ["<|startoflm|>", "<|startofprev|>", "<|nospeech|>"]
    layers, heads = config.decoder_layers, config.decoder_attention_heads
    return GenerationConfig(
        decoder_start_token_id=token_id("<|startoftranscript|>"),
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=config.max_target_positions,
        is_multilingual=True,
        lang_to_id={f"<|{code}|>": token_id(f"<|{code}|>") for code in LANGUAGES},
        task_to_id={task: token_id(f"<|{task}|>") for task in ("transcribe", "translate")},
        no_timestamps_token_id=token_id("<|notimestamps|>"),
        prev_sot_token_id=token_id("<|startofprev|>"),
        # language and task come from generate(language=, task=), not from here
        forced_decoder_ids=None,
        suppress_tokens=sorted(suppressed_symbols(tokenizer) + [token_id(t) for t in never_sampled]),
        # a transcript starts neither with a space nor empty
        begin_suppress_tokens=[*tokenizer.encode(" ", add_special_tokens=False), eot],
        # OpenAI's default before heads are measured: every head of the upper half
        alignment_heads=[[layer, head] for layer in range(layers // 2, layers) for head in range(heads)],
        max_initial_timestamp_index=round(MAX_INITIAL_TIMESTAMP / TIME_PRECISION),
        return_timestamps=False,
    )


def build_model(
    tokenizer: WhisperTokenizer, n_mels: int, seed: int, size: dict
) -> WhisperForConditionalGeneration:
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=n_mels,
        max_source_positions=N_AUDIO_CTX,
        max_target_positions=MAX_TARGET_POSITIONS,
        decoder_start_token_id=tokenizer.convert_tokens_to_ids("<|startoftranscript|>"),
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        # the class defaults point into OpenAI's 51865-token vocabulary
        suppress_tokens=None,
        begin_suppress_tokens=None,
        **size,
    )
    # seeded without disturbing the caller's random state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WhisperForConditionalGeneration(config)
    model.generation_config = build_generation_config(tokenizer, config)
    return model


def build_params(n_mels: int, seed: int, texts: list[str], size: dict) -> dict:
    texts_digest = hashlib.sha256(json.dumps(texts, ensure_ascii=False).encode()).hexdigest()
    return {
        "format": BUILD_FORMAT,
        "n_mels": n_mels,
        "seed": seed,
        "size": size,
        "texts_sha256": texts_digest,
    }


def already_built(out_dir: Path, params: dict) -> bool:
    """Whether out_dir holds this very build; raises if it holds anything else."""
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return False
    record = out_dir / BUILD_RECORD
    if not record.is_file():
        raise FileExistsError(
            f"{out_dir} holds something other than a complete tiny model: remove it or build elsewhere"
        )
    built_with = json.loads(record.read_text())
    if built_with != params:
        raise FileExistsError(
            f"{out_dir} holds a tiny model built with {built_with}, not {params}: "
            "remove it or build elsewhere"
        )
    return True


def build(out_dir: Path, n_mels: int = 80, seed: int = 0, texts: Iterable[str] | None = None, **size) -> Path:
    """Write a tiny Whisper checkpoint to out_dir, or reuse the one already there.

    The tokenizer is trained on texts plus the common Hangul syllables; size
    overrides entries of DEFAULT_SIZE. The same arguments give the same files.
    Returns out_dir, ready for from_pretrained.
    """
    unknown = set(size) - set(DEFAULT_SIZE)
    if unknown:
        raise TypeError(f"unknown size parameters {sorted(unknown)}; expected some of {list(DEFAULT_SIZE)}")
    size = {**DEFAULT_SIZE, **size}
    texts = list(texts or [])
    out_dir = Path(out_dir)
    params = build_params(n_mels, seed, texts, size)
    if already_built(out_dir, params):
        return out_dir

    tokenizer = build_tokenizer(texts)
    feature_extractor = WhisperFeatureExtractor(
        feature_size=n_mels,
        sampling_rate=SAMPLING_RATE,
        chunk_length=CHUNK_LENGTH,
        hop_length=HOP_LENGTH,
        n_fft=N_FFT,
    )
    model = build_model(tokenizer, n_mels, seed, size)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(out_dir)
    # written last: its presence marks a complete build
    (out_dir / BUILD_RECORD).write_text(json.dumps(params, indent=2) + "\n")
    return out_dir


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("models/tiny-ko"), show_default=True)
@click.option("--n-mels", type=click.Choice([80, 128]), default=80, show_default=True, help="128: large-v3")
@click.option("--seed", type=int, default=0, show_default=True)
def main(out: Path, n_mels: int, seed: int):
    """Build the tiny Korean Whisper, its tokenizer trained on the sample corpus."""
    try:
        click.echo(build(out, n_mels=n_mels, seed=seed, texts=training_texts()))
    except FileExistsError as error:
        raise click.ClickException(str(error)) from error


if __name__ == "__main__":
    main()
