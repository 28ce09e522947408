"""The tiny Whisper must load and behave like an OpenAI checkpoint, offline."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from transformers import (
    AutoProcessor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
    pipeline,
)
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from whisper_ko_fixtures import tiny_model
from whisper_ko_fixtures.sample_corpus import training_texts

TEXTS = [
    "안녕하세요. 오늘 회의는 세 시에 시작합니다.",
    "안녕하세요. 내일 날씨는 맑겠습니다.",
    "KTX 열차는 2시간 30분 뒤에 부산에 도착합니다!",
    "회의는 내일 다시 시작합니다.",
]

OPENAI_SPECIAL_TOKENS = [
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

ONE_SECOND = np.random.default_rng(0).normal(scale=0.1, size=16000).astype(np.float32)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {n_mels: tiny_model.build(root / str(n_mels), n_mels=n_mels, texts=TEXTS) for n_mels in (80, 128)}


@pytest.fixture(scope="module")
def processor(model_dirs):
    return WhisperProcessor.from_pretrained(model_dirs[80])


@pytest.fixture()
def tokenizer(model_dirs):
    # set_prefix_tokens mutates the tokenizer: every test starts from the saved one
    return WhisperTokenizer.from_pretrained(model_dirs[80])


@pytest.fixture(scope="module")
def ids(processor):
    return {token: processor.tokenizer.convert_tokens_to_ids(token) for token in OPENAI_SPECIAL_TOKENS}


def load_model(model_dir) -> WhisperForConditionalGeneration:
    return WhisperForConditionalGeneration.from_pretrained(model_dir, use_safetensors=True)


def test_special_tokens_follow_the_bpe_vocabulary_in_openai_order(processor, ids):
    tokenizer = processor.tokenizer
    eot = ids["<|endoftext|>"]
    assert list(ids.values()) == list(range(eot, eot + len(OPENAI_SPECIAL_TOKENS)))
    assert eot == tokenizer.eos_token_id == len(tokenizer) - len(OPENAI_SPECIAL_TOKENS) - 1501
    assert ids["<|ko|>"] == ids["<|startoftranscript|>"] + 1 + list(LANGUAGES).index("ko")
    # transformers finds timestamps after the last special id, and no-speech before <|notimestamps|>
    assert tokenizer.all_special_ids[-1] == ids["<|notimestamps|>"]
    assert ids["<|nospeech|>"] == ids["<|notimestamps|>"] - 1
    assert tokenizer.convert_tokens_to_ids("<|0.00|>") == ids["<|notimestamps|>"] + 1
    assert tokenizer.convert_tokens_to_ids("<|30.00|>") == len(tokenizer) - 1
    # plain added tokens, as in OpenAI's tokenizers
    assert not tokenizer.added_tokens_decoder[len(tokenizer) - 1].special


def test_prefix_tokens_for_korean_transcription(tokenizer, ids):
    tokenizer.set_prefix_tokens(language="korean", task="transcribe", predict_timestamps=False)
    prefix = [ids[t] for t in ["<|startoftranscript|>", "<|ko|>", "<|transcribe|>", "<|notimestamps|>"]]
    assert tokenizer.prefix_tokens == prefix

    input_ids = tokenizer("안녕하세요").input_ids
    assert input_ids[:4] == prefix
    assert input_ids[-1] == ids["<|endoftext|>"]
    assert tokenizer.decode(input_ids[4:-1]) == "안녕하세요"


@pytest.mark.parametrize(
    "text",
    [
        "안녕하세요",
        "오늘은 2024년 3월 15일, 날씨가 맑습니다.",
        "KTX 타고 부산 가요! (약 2시간 30분)",
        "똠방각하 뷁 쀍",  # outside the 2,350 common syllables: byte fallback
        "  앞뒤 공백  ",
        "\"따옴표\"와 '작은따옴표', 그리고 이모지 😀",
        "띄어쓰기 . 그대로 , 두기 ? 네 !",
    ],
)
def test_decode_restores_korean_text_exactly(tokenizer, text):
    tokenizer.set_prefix_tokens(language="korean", task="transcribe", predict_timestamps=False)
    assert tokenizer.decode(tokenizer(text).input_ids, skip_special_tokens=True) == text


def test_special_and_timestamp_tokens_are_never_split(tokenizer, ids):
    text_ids = tokenizer("안녕", add_special_tokens=False).input_ids
    encoded = tokenizer("<|ko|>안녕<|1.00|><|endoftext|>", add_special_tokens=False).input_ids
    one_second = tokenizer.convert_tokens_to_ids("<|1.00|>")
    assert encoded == [ids["<|ko|>"], *text_ids, one_second, ids["<|endoftext|>"]]


def test_common_syllables_and_recurring_words_are_single_tokens(tokenizer):
    syllables = tiny_model.common_hangul_syllables()
    assert len(syllables) == 2350
    words = ["안녕하세요", " 시작합니다"]  # twice in TEXTS
    encoded = tokenizer(syllables + words, add_special_tokens=False).input_ids
    assert all(len(tokens) == 1 for tokens in encoded)


def test_model_matches_tokenizer_and_feature_extractor(model_dirs):
    for n_mels, model_dir in model_dirs.items():
        model = load_model(model_dir)
        processor = AutoProcessor.from_pretrained(model_dir)
        embeddings = model.get_input_embeddings().num_embeddings
        assert model.config.vocab_size == len(processor.tokenizer) == embeddings
        assert 2350 < len(processor.tokenizer) - 1501 < 10000  # a few thousand tokens
        assert model.config.num_mel_bins == processor.feature_extractor.feature_size == n_mels
        features = processor(ONE_SECOND, sampling_rate=16000, return_tensors="pt").input_features
        assert features.shape == (1, n_mels, 3000)


def test_generation_config_carries_what_whisper_generate_reads(model_dirs, processor, ids):
    model = load_model(model_dirs[80])
    config = model.generation_config
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    assert config.decoder_start_token_id == model.config.decoder_start_token_id == sot
    assert config.bos_token_id == config.eos_token_id == config.pad_token_id == eot
    assert config.lang_to_id == {f"<|{code}|>": ids[f"<|{code}|>"] for code in LANGUAGES}
    assert config.task_to_id == {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
    assert config.no_timestamps_token_id == ids["<|notimestamps|>"]
    assert config.prev_sot_token_id == ids["<|startofprev|>"]
    assert config.is_multilingual is True
    assert config.forced_decoder_ids is None
    assert config.max_length == model.config.max_target_positions == 448
    assert config.max_initial_timestamp_index == 50
    space = processor.tokenizer.convert_tokens_to_ids("Ġ")
    assert config.begin_suppress_tokens == [space, eot]

    suppressed = set(config.suppress_tokens)
    assert {sot, ids["<|translate|>"], ids["<|transcribe|>"], ids["<|startofprev|>"]} <= suppressed
    assert processor.tokenizer.convert_tokens_to_ids("#") in suppressed
    korean = processor.tokenizer(TEXTS, add_special_tokens=False).input_ids
    assert suppressed.isdisjoint([eot, space, *(token for word in korean for token in word)])

    layers, heads = model.config.decoder_layers, model.config.decoder_attention_heads
    assert config.alignment_heads
    assert all(0 <= layer < layers and 0 <= head < heads for layer, head in config.alignment_heads)


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("language", ["ko", "korean"])
def test_generate_starts_with_the_forced_korean_prefix(model_dirs, ids, n_mels, language):
    model = load_model(model_dirs[n_mels])
    processor = WhisperProcessor.from_pretrained(model_dirs[n_mels])
    features = processor(ONE_SECOND, sampling_rate=16000, return_tensors="pt").input_features
    # transformers 5 strips the prefix from the plain tensor, but not from the dict
    output = model.generate(
        features, language=language, task="transcribe", max_new_tokens=3, return_dict_in_generate=True
    )
    prefix = [ids[t] for t in ["<|startoftranscript|>", "<|ko|>", "<|transcribe|>", "<|notimestamps|>"]]
    assert output.sequences[0, :4].tolist() == prefix


def test_asr_pipeline_runs_on_one_second_of_audio(model_dirs):
    asr = pipeline("automatic-speech-recognition", model=str(model_dirs[80]), device="cpu")
    result = asr(ONE_SECOND, generate_kwargs={"language": "ko", "max_new_tokens": 4})
    assert isinstance(result["text"], str)


def test_same_seed_gives_identical_files(tmp_path):
    first = tiny_model.build(tmp_path / "first", seed=3, texts=TEXTS)
    second = tiny_model.build(tmp_path / "second", seed=3, texts=TEXTS)
    other_seed = tiny_model.build(tmp_path / "other", seed=4, texts=TEXTS)
    files = sorted(path.name for path in first.iterdir())
    assert files == sorted(path.name for path in second.iterdir())
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert (first / "tokenizer.json").read_bytes() == (other_seed / "tokenizer.json").read_bytes()
    assert (first / "model.safetensors").read_bytes() != (other_seed / "model.safetensors").read_bytes()


def test_existing_build_is_reused_and_other_content_refused(tmp_path):
    out = tmp_path / "model"
    tiny_model.build(out, texts=TEXTS)
    weights = out / "model.safetensors"
    built_at = weights.stat().st_mtime_ns
    assert tiny_model.build(out, texts=TEXTS) == out
    assert weights.stat().st_mtime_ns == built_at

    with pytest.raises(FileExistsError):
        tiny_model.build(out, seed=1, texts=TEXTS)
    with pytest.raises(FileExistsError):
        tiny_model.build(out, texts=TEXTS[:1])

    (tmp_path / "unrelated").mkdir()
    (tmp_path / "unrelated" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        tiny_model.build(tmp_path / "unrelated", texts=TEXTS)


def test_size_can_be_overridden(tmp_path):
    model_dir = tiny_model.build(
        tmp_path / "small", texts=TEXTS, d_model=64, decoder_layers=1, decoder_attention_heads=2
    )
    model = load_model(model_dir)
    assert (model.config.d_model, model.config.decoder_layers, model.config.encoder_layers) == (64, 1, 2)
    assert model.generation_config.alignment_heads == [[0, 0], [0, 1]]
    with torch.no_grad():
        sot = torch.tensor([[model.config.decoder_start_token_id]])
        logits = model(torch.zeros(1, 80, 3000), decoder_input_ids=sot).logits
    assert logits.shape == (1, 1, model.config.vocab_size)

    with pytest.raises(TypeError, match="vocab_size"):
        tiny_model.build(tmp_path / "bad", vocab_size=10)


def test_cli_builds_on_the_sample_corpus_and_reuses_it(tmp_path):
    out = tmp_path / "tiny-ko"
    args = ["--out", str(out), "--n-mels", "128", "--seed", "1"]
    result = CliRunner().invoke(tiny_model.main, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    assert WhisperProcessor.from_pretrained(out).feature_extractor.feature_size == 128

    expected = tiny_model.build(tmp_path / "expected", n_mels=128, seed=1, texts=training_texts())
    for name in ["tokenizer.json", "model.safetensors"]:
        assert (out / name).read_bytes() == (expected / name).read_bytes()

    assert CliRunner().invoke(tiny_model.main, args).exit_code == 0
    refused = CliRunner().invoke(tiny_model.main, ["--out", str(out), "--seed", "2"])
    assert refused.exit_code == 1
    assert "built with" in refused.output


def test_labels_pad_like_an_openai_tokenizer(tokenizer, ids):
    # The Hugging Face fine-tuning collator pads labels with the tokenizer: it needs a pad token.
    assert tokenizer.pad_token == "<|endoftext|>"
    batch = tokenizer.pad([{"input_ids": [1, 2, 3]}, {"input_ids": [4]}], return_tensors="pt")
    assert batch["input_ids"][1].tolist() == [4, tokenizer.eos_token_id, tokenizer.eos_token_id]
