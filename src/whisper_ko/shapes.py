"""The shapes of OpenAI's Whisper checkpoints, as their config.json files on the hub give them:
for sizing memory, for random models of a real shape, and for checking a rebuilt checkpoint."""

from whisper_ko.audio import N_AUDIO_CTX

MAX_TARGET_POSITIONS = 448  # the decoder's positions: a label longer than this cannot be trained on
# AI Hub's telephone set (reference: 4.6 s and 28 characters an utterance; Whisper's tokenizer gives
# Korean about 0.63 tokens a character): a single clip's label is about 24 tokens with its prefix;
# a packed 30 s window holds 6 utterances (0.35 s gaps) and about 128 tokens with timestamps.
TELEPHONE_SINGLE_TOKENS = 24
TELEPHONE_PACKED_UTTERANCES = 6
TELEPHONE_PACKED_TOKENS = 128
# d_model, encoder layers, decoder layers, attention heads, feed-forward width, mel bins, vocabulary
SHAPES = {
    "tiny": (384, 4, 4, 6, 1536, 80, 51865),
    "base": (512, 6, 6, 8, 2048, 80, 51865),
    "small": (768, 12, 12, 12, 3072, 80, 51865),
    "medium": (1024, 24, 24, 16, 4096, 80, 51865),
    "large-v3": (1280, 32, 32, 20, 5120, 128, 51866),
    "large-v3-turbo": (1280, 32, 4, 20, 5120, 128, 51866),
}


def config(shape: str | tuple, **overrides):
    """A WhisperConfig of `shape` (a name of SHAPES, or such a tuple), 30 s windows, 448 target positions."""
    from transformers import WhisperConfig  # seconds to import: only where a config is made

    d_model, encoder, decoder, heads, ffn, mels, vocab = SHAPES[shape] if isinstance(shape, str) else shape
    return WhisperConfig(
        d_model=d_model,
        encoder_layers=encoder,
        decoder_layers=decoder,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        num_mel_bins=mels,
        vocab_size=vocab,
        max_source_positions=N_AUDIO_CTX,
        max_target_positions=MAX_TARGET_POSITIONS,
        **overrides,
    )


def training_flops(shape: str, label_tokens: int) -> float:
    """Multiply-add FLOPs of one training example (forward and backward: three forwards) of a 30 s
    window with `label_tokens` decoder positions: the convolutions, every projection and attention
    product, and the vocabulary projection. Packing raises label tokens only, the encoder's 1500
    positions stay: this is what a packed window costs beside a single clip."""
    d, encoder, decoder, _, ffn, mels, vocab = SHAPES[shape]
    frames, t = 2 * N_AUDIO_CTX, label_tokens
    conv = 2 * 3 * (mels * d * frames + d * d * N_AUDIO_CTX)
    enc_layer = 2 * N_AUDIO_CTX * (4 * d * d + 2 * d * ffn) + 4 * N_AUDIO_CTX**2 * d
    dec_layer = (
        2 * t * (6 * d * d + 2 * d * ffn)  # self-attention, cross-attention's query and output, feed-forward
        + 2 * N_AUDIO_CTX * 2 * d * d  # cross-attention's keys and values of the encoder output
        + 4 * t * t * d
        + 4 * t * N_AUDIO_CTX * d  # attention products
    )
    return 3 * (conv + encoder * enc_layer + decoder * dec_layer + 2 * t * d * vocab)
