"""The shapes of OpenAI's Whisper checkpoints, as their config.json files on the hub give them:
for sizing memory, for random models of a real shape, and for checking a rebuilt checkpoint."""

from whisper_ko.audio import N_AUDIO_CTX

MAX_TARGET_POSITIONS = 448  # the decoder's positions: a label longer than this cannot be trained on
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
