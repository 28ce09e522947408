import numpy as np
import torch
from transformers import WhisperForConditionalGeneration
from transformers.models.whisper.modeling_whisper import shift_tokens_right

from whisper_ko import features, labels
from whisper_ko.collate import IGNORE_INDEX, Collator


def test_decoder_sees_one_sot_then_language_task_and_text(tiny_model):
    tok = labels.load_tokenizer(str(tiny_model), "ko", "transcribe")
    model = WhisperForConditionalGeneration.from_pretrained(tiny_model)
    sot, ko, transcribe, no_ts, eot = tok.convert_tokens_to_ids(
        ["<|startoftranscript|>", "<|ko|>", "<|transcribe|>", "<|notimestamps|>", "<|endoftext|>"]
    )
    short, long = labels.encode(tok, ["네", "주문하신 상품은 내일 도착합니다"])
    assert short[:4] == [sot, ko, transcribe, no_ts] and short[-1] == eot

    records = [
        {"input_features": np.zeros((80, 5), np.float16), "labels": short},
        {"input_features": np.ones((80, 7), np.float16), "labels": long},
    ]
    batch = Collator(model.config.decoder_start_token_id)(records)

    assert batch["input_features"].shape == (2, 80, 3000) and batch["input_features"].dtype == torch.float32
    np.testing.assert_array_equal(batch["input_features"][1].numpy(), features.pad(records[1]["input_features"]))
    target = batch["labels"][0].tolist()
    assert target[: len(short) - 1] == short[1:]  # SOT stripped exactly once
    assert set(target[len(short) - 1 :]) == {IGNORE_INDEX}
    assert batch["labels"][1].tolist() == long[1:]

    decoder_inputs = shift_tokens_right(batch["labels"], model.config.pad_token_id, model.config.decoder_start_token_id)
    assert decoder_inputs[1].tolist() == long[:-1]  # SOT <|ko|> <|transcribe|> <|notimestamps|> text…
    assert decoder_inputs[1].tolist().count(sot) == 1


def test_labels_without_sot_are_left_alone():
    assert Collator(7).strip_sot([7, 7, 1]) == [7, 1]
    assert Collator(7).strip_sot([1, 2]) == [1, 2]


def test_training_dtype_is_applied():
    batch = Collator(1, torch.bfloat16)([{"input_features": np.zeros((80, 3), np.float16), "labels": [1, 2]}])
    assert batch["input_features"].dtype == torch.bfloat16
