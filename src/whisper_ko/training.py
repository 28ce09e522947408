"""Fine-tuning with transformers' Seq2SeqTrainer on the compact feature shards."""

import json
import shutil
import time
from pathlib import Path

import torch
from transformers import (
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    WhisperForConditionalGeneration,
    WhisperProcessor,
)

from whisper_ko import shards
from whisper_ko.collate import Collator

# Seq2SeqTrainingArguments fields the `train` params section may set directly.
TRAINER_KEYS = {
    "learning_rate",
    "warmup_ratio",
    "lr_scheduler_type",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "weight_decay",
    "max_grad_norm",
    "seed",
    "dataloader_num_workers",
}


def precision() -> dict:
    """bf16 where the GPU supports it, fp16 on older GPUs, fp32 on CPU."""
    if not torch.cuda.is_available():
        return {}
    return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}


def open_split(directory: str | Path, n_mels: int) -> shards.ShardSet:
    data = shards.open(directory)
    if len(data) == 0:
        raise ValueError(f"{directory}: the feature shards hold no utterances")
    if data.n_mels != n_mels:
        raise ValueError(f"{directory}: features have {data.n_mels} mel bins, the model expects {n_mels}")
    return data


def finetune(
    *,
    base: str,
    train_dir: str | Path,
    val_dir: str | Path,
    output_dir: str | Path,
    checkpoint_dir: str | Path,
    language: str,
    task: str,
    trainer_args: dict,
) -> dict:
    """Fine-tune `base`, save a plain Whisper directory in `output_dir`; returns the summary."""
    model = WhisperForConditionalGeneration.from_pretrained(base)
    processor = WhisperProcessor.from_pretrained(base)
    n_mels = model.config.num_mel_bins
    train_set, val_set = open_split(train_dir, n_mels), open_split(val_dir, n_mels)
    # Generation settings travel with the model; the base's suppress_tokens, alignment_heads and
    # lang_to_id stay as they are (an empty suppress list makes deployed models hallucinate).
    model.generation_config.language = language
    model.generation_config.task = task
    model.generation_config.forced_decoder_ids = None
    model.config.forced_decoder_ids = None

    trainer_args = dict(trainer_args)
    # transformers 5 folds warmup_ratio into warmup_steps: a float below 1 is a ratio.
    trainer_args["warmup_steps"] = float(trainer_args.pop("warmup_ratio", 0.0))
    checkpoint_dir = Path(checkpoint_dir)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    args = Seq2SeqTrainingArguments(
        output_dir=str(checkpoint_dir),
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_steps=10,
        report_to=[],
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_pin_memory=torch.cuda.is_available(),
        **precision(),
        **trainer_args,
    )
    dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else torch.float32
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        data_collator=Collator(model.config.decoder_start_token_id, dtype),
    )
    start = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - start

    output_dir = Path(output_dir)
    shutil.rmtree(output_dir, ignore_errors=True)
    trainer.save_model(str(output_dir))
    processor.save_pretrained(str(output_dir))
    summary = {
        "base": base,
        "train_utterances": len(train_set),
        "val_utterances": len(val_set),
        "best_step": _step_of(trainer.state.best_model_checkpoint),
        "best_val_loss": trainer.state.best_metric,
        "global_steps": result.global_step,
        "samples_seen": round(trainer.state.epoch * len(train_set)),
        "wall_time_s": round(wall, 1),
        "samples_per_s": round(result.metrics.get("train_samples_per_second", 0.0), 2),
        "train_loss": result.training_loss,
        "params": trainer_args,
    }
    (output_dir / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _step_of(checkpoint: str | None) -> int | None:
    return int(checkpoint.rsplit("-", 1)[1]) if checkpoint else None
