"""Fine-tuning with transformers' Seq2SeqTrainer on the compact feature shards.

Full fine-tune, LoRA (merged into a plain Whisper at the end) or a frozen encoder; evaluation by
generation on (a capped part of) val, scored with the benchmark's own metrics; the best checkpoint
by no-space CER is kept, early stopping on it; curves through DVCLive; resumable.
"""

import ast
import hashlib
import json
import logging
import math
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from accelerate import PartialState
from transformers import (
    EarlyStoppingCallback,
    SchedulerType,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    TrainerCallback,
    WhisperForConditionalGeneration,
    WhisperProcessor,
)
from transformers.trainer_callback import ExportableState, ProgressCallback
from transformers.trainer_pt_utils import get_length_grouped_indices

from whisper_ko import checks, metrics, runtime, shards
from whisper_ko.checkpoints import (
    AVERAGED,
    FINAL,
    best_steps,
    checkpoint_scores,
    completed_run,
    load_weights,
    mark_completed,
    prepare_checkpoints,
    read_marker,
    resume_point,
    saved_checkpoints,
    tied_keys,
    write_average,
)
from whisper_ko.checks import SUMMARY
from whisper_ko.collate import IGNORE_INDEX, Collator
from whisper_ko.config import Model, ParamsError, Paths, SpecAugment, Train
from whisper_ko.errors import UserError

# Under fp16 the loss scaler meets an overflow now and then: it skips that step and lowers its scale.
FP16_OVERFLOW_STEPS = 8  # consecutive non-finite fp16 losses tolerated while it backs off


class TrainingError(UserError):
    """Data, a base model or settings this run cannot train on, or a run that went wrong."""


# ---------------------------------------------------------------- arguments


def trainer_kwargs(config: Train, checkpoints: str, precision: str, cuda: bool) -> dict:
    """Seq2SeqTrainingArguments of this run (creating them sets up the process group under torchrun)."""
    if config.eval_steps:
        strategy = {
            "eval_strategy": "steps",
            "save_strategy": "steps",
            "eval_steps": config.eval_steps,
            "save_steps": config.eval_steps,
        }
    else:
        strategy = {"eval_strategy": "epoch", "save_strategy": "epoch"}
    # use_cpu makes a torchrun launch on CPU a real DDP run over gloo. No tf32 here: TF32 is set
    # once by runtime.set_matmul_precision, the same way as in inference.
    device = {"optim": "adamw_torch_fused"} if cuda else {"use_cpu": True, "dataloader_pin_memory": False}
    return dict(
        output_dir=checkpoints,
        **strategy,
        load_best_model_at_end=True,
        metric_for_best_model=config.metric_for_best_model,
        greater_is_better=False,
        predict_with_generate=True,
        warmup_steps=config.warmup_ratio,  # transformers 5: a float below 1 is a ratio of all steps
        # LengthGrouped orders the examples itself (`train_dataset`): the sampler then keeps its order
        train_sampling_strategy="sequential" if config.group_by_length else "random",
        activation_checkpointing=config.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        # Every method trains all of its trainable parameters in every step: DDP need not search
        # the graph for unused ones after each backward.
        ddp_find_unused_parameters=False,
        # A resumed run continues early stopping's count and the whole run's loss (RunLoss).
        restore_callback_states_from_checkpoint=True,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        report_to=[],
        remove_unused_columns=False,
        label_names=["labels"],
        **config.trainer_args(),
        **device,
    )


# ---------------------------------------------------------------- data and checks


def open_split(directory: str | Path) -> shards.ShardSet:
    data = shards.open(directory)
    if len(data) == 0:
        raise TrainingError(f"{directory}: the feature shards hold no utterances")
    return data


def check_model(
    model: WhisperForConditionalGeneration, language: str, train_set, val_set, processor: WhisperProcessor
) -> None:
    """Fail before any heavy work on a base model that cannot learn these labels."""
    for data in (train_set, val_set):
        if data.n_mels != model.config.num_mel_bins:
            raise TrainingError(
                f"the features have {data.n_mels} mel bins, the model expects {model.config.num_mel_bins}: "
                "preprocess with this model.base"
            )
    if len(processor.tokenizer) != model.config.vocab_size:
        raise TrainingError(
            f"model.base {model.name_or_path}: its tokenizer has {len(processor.tokenizer)} tokens, the model "
            f"{model.config.vocab_size}: the tokenizer files are missing or belong to another model"
        )
    lang_to_id = getattr(model.generation_config, "lang_to_id", None) or {}
    if f"<|{language}|>" not in lang_to_id:
        raise TrainingError(f"the base model has no <|{language}|> language token: it is not multilingual Whisper")
    longest = int(train_set.label_lengths().max())
    if longest - 1 > model.config.max_target_positions:  # minus the start token the collator strips
        raise TrainingError(
            f"labels up to {longest} tokens, the model's decoder takes {model.config.max_target_positions}: "
            "lower preprocess.max_label_tokens"
        )


def eval_subset(val_set: shards.ShardSet, limit: int | None, seed: int):
    if not limit or limit >= len(val_set):
        return val_set
    keep = np.sort(np.random.default_rng(seed).choice(len(val_set), limit, replace=False))
    return torch.utils.data.Subset(val_set, keep.tolist())


# ---------------------------------------------------------------- model


def apply_method(model: WhisperForConditionalGeneration, config: Train):
    if config.method == "freeze_encoder":
        model.freeze_encoder()
        return model
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora.r,
            lora_alpha=config.lora.alpha,
            lora_dropout=config.lora.dropout,
            target_modules=list(config.lora.target_modules),
        )
        return get_peft_model(model, lora)
    return model


def set_spec_augment(model: WhisperForConditionalGeneration, config: SpecAugment) -> None:
    """Whisper's own SpecAugment, which masks input features in training mode only."""
    model.config.apply_spec_augment = config.apply
    if config.apply:
        for name, value in config.model_dump().items():
            if name != "apply":
                setattr(model.config, name, value)


@contextmanager
def spec_augment_off(model):
    """Off for the duration, as every saved config has it (LoRA: the base model's config)."""
    whisper_config = model.config
    applied = getattr(whisper_config, "apply_spec_augment", False)
    whisper_config.apply_spec_augment = False
    try:
        yield
    finally:
        whisper_config.apply_spec_augment = applied


def plain_model(model) -> WhisperForConditionalGeneration:
    """LoRA weights merged into the base: a checkpoint any Whisper tool loads."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


# ---------------------------------------------------------------- evaluation and logging


def cer_metrics(processor: WhisperProcessor):
    """compute_metrics for Seq2SeqTrainer: the benchmark's corpus-level CER/WER on decoded text, and
    the share of val utterances in a repetition loop, so a looping checkpoint shows in the curves."""
    pad = processor.tokenizer.eos_token_id  # special, so decoding skips it

    def compute(prediction) -> dict:
        predicted = np.where(prediction.predictions != IGNORE_INDEX, prediction.predictions, pad)
        labels = np.where(prediction.label_ids != IGNORE_INDEX, prediction.label_ids, pad)
        hyps = processor.batch_decode(predicted, skip_special_tokens=True)
        refs = processor.batch_decode(labels, skip_special_tokens=True)
        pairs = zip(refs, hyps, strict=True)
        scores = metrics.aggregate([metrics.utterance_scores(r.strip(), h.strip()) for r, h in pairs])
        return {k: scores[k] for k in ("cer", "cer_nospace", "wer", "share_loops")}

    return compute


class DVCLiveLogger(TrainerCallback):
    """Train loss and eval CER/WER per step into dvclive/ (no TrainingArguments dumped as params).
    Results only: the learning rate follows from the params and memory varies from run to run, so
    neither reaches the curves `dvc metrics diff` compares."""

    KEYS: ClassVar[dict[str, str]] = {
        "loss": "train/loss",
        "eval_loss": "eval/loss",
        "eval_cer": "eval/cer",
        "eval_cer_nospace": "eval/cer_nospace",
        "eval_wer": "eval/wer",
        "eval_share_loops": "eval/share_loops",
    }

    def __init__(self, directory: str):
        self.directory, self.live = directory, None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.start(state.log_history)

    def start(self, log_history: list[dict]) -> None:
        """A new DVCLive folder with the curves of `log_history`: a resumed run restores its log
        history from the checkpoint, a reused run from its completion record (DVC removed the
        curves before rerunning the stage)."""
        from dvclive import Live

        self.live = Live(self.directory, dvcyaml=False, save_dvc_exp=False, report=None)
        for entry in log_history:
            self.log_values(entry, entry.get("step", 0))

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.log_values(logs or {}, state.global_step)

    def log_values(self, logs: dict, step: int) -> None:
        values = {name: logs[key] for key, name in self.KEYS.items() if key in logs}
        if self.live is None or not values:
            return
        self.live.step = step
        for name, value in values.items():
            self.live.log_metric(name, float(value))
        self.live.next_step()

    def on_train_end(self, args, state, control, **kwargs):
        if self.live is not None:
            self.live.end()


class ReadableProgress(ProgressCallback):
    """transformers' progress bar, with a sentence per log instead of a Python dict."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            self.training_bar.write(log_line(logs, state.global_step, state.max_steps))


def log_line(logs: dict, step: int, max_steps: int) -> str:
    where = f"step {step}/{max_steps}"
    if "eval_loss" in logs:
        scores = ", ".join(f"{label} {100 * logs[key]:.2f}%" for key, label in EVAL_SCORES.items() if key in logs)
        memory = f", peak memory {logs['eval_peak_memory_gib']:.1f} GiB" if "eval_peak_memory_gib" in logs else ""
        return f"{where} (epoch {logs.get('epoch', 0):.2f}): validation {scores}, loss {logs['eval_loss']:.3f}{memory}"
    if "train_runtime" in logs:
        minutes, seconds = divmod(round(logs["train_runtime"]), 60)
        return (
            f"trained {step} steps in {minutes}:{seconds:02d} ({logs.get('train_samples_per_second', 0):.2f} windows/s)"
        )
    if "loss" in logs:
        return f"{where}: loss {logs['loss']:.3f}, learning rate {logs.get('learning_rate', 0):.2e}"
    return f"{where}: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in logs.items())


EVAL_SCORES = {
    "eval_cer_nospace": "no-space CER",
    "eval_cer": "CER",
    "eval_wer": "WER",
    "eval_share_loops": "utterances looping",
}


class StepClock(TrainerCallback):
    """Seconds spent in training steps (forward, backward, optimizer), apart from evaluation and
    saving: the rate of the training itself, which packing changes."""

    def __init__(self):
        self.seconds, self.first_epoch, self.started = 0.0, 0.0, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.first_epoch = state.epoch or 0.0  # a resumed run's steps start there

    def epochs(self, state) -> float:
        return (state.epoch or 0.0) - self.first_epoch

    def on_step_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.started is not None:
            self.seconds += time.perf_counter() - self.started
            self.started = None


class RunLoss(TrainerCallback, ExportableState):
    """The training loss summed over every step of the run, kept in each checkpoint, so that a
    resumed run reports its mean over all its steps rather than over those since the resume."""

    def __init__(self):
        self.total = 0.0

    def state(self) -> dict:
        return {"args": {}, "attributes": {"total": self.total}}


class ShardTrainer(Seq2SeqTrainer):
    """Seq2SeqTrainer whose length grouping reads label lengths from the shard index, whose
    evaluation generates under autocast, whose evaluation logs carry peak memory, and that stops
    at the first non-finite loss instead of training a model of NaN."""

    def __init__(self, *args, max_new_tokens: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_new_tokens = max_new_tokens
        self.overflows = 0

    def run_loss(self) -> RunLoss:
        # looked up each time: resuming replaces the callback with the one restored from the checkpoint
        return next(cb for cb in self.callback_handler.callbacks if isinstance(cb, RunLoss))

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        value = loss.item()
        if math.isfinite(value):
            self.overflows = 0
            self.run_loss().total += value
            return loss
        self.overflows += 1
        if not self.args.fp16 or self.overflows > FP16_OVERFLOW_STEPS:
            raise TrainingError(
                f"the training loss became {value} at step {self.state.global_step + 1}: non-finite features "
                "in the data or a learning rate too high; no model was saved"
            )
        return loss

    def save_model(self, output_dir=None, *args, **kwargs):
        # The Trainer saves every checkpoint through here too.
        with spec_augment_off(self.model):  # a checkpoint deploys, and resumes, without it
            super().save_model(output_dir, *args, **kwargs)  # saves the processor too
        if self.args.should_save:  # every checkpoint deploys as it is
            save_preprocessor_config(self.processing_class, output_dir or self.args.output_dir)

    def evaluate(self, *args, **gen_kwargs):
        # Bounded like the benchmark's decoding (max_new_tokens), so that the validation CER and the
        # benchmark's CER of the same model on the same clips are equal. Said as max_length, which
        # Whisper's generate counts after the prompt too: Seq2SeqTrainer drops a max_length of None,
        # and generate would then warn at every evaluation that the checkpoint's max_length and
        # max_new_tokens are both set.
        return super().evaluate(*args, **{"max_length": self.max_new_tokens, **gen_kwargs})

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        # Every frame is real model input (the padding is Whisper's own): a mask of ones, as the
        # benchmark passes, so generate need not warn that it cannot infer one.
        features = inputs["input_features"]
        inputs = {
            **inputs,
            "attention_mask": features.new_ones(features.shape[0], features.shape[-1], dtype=torch.long),
        }
        # Accelerate wraps only forward() in autocast; generate() runs the encoder outside it, so
        # bf16/fp16 features would meet fp32 weights in conv1 at the first evaluation.
        with self.accelerator.autocast():
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys, **gen_kwargs)

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "eval_loss" in logs:
            logs["eval_peak_memory_gib"] = round(runtime.peak_memory_gib(self.args.device.type == "cuda"), 3)
        super().log(logs, *args, **kwargs)


class TiedKeysNotMissing(logging.Filter):
    """Drops the Trainer's warning of missing keys on resume or at the best checkpoint's reload when
    the keys are only tied ones (Whisper's output projection is its decoder's embeddings, never
    written to a checkpoint): not a lost weight. Any other missing key is still reported."""

    PREFIX = "There were missing keys in the checkpoint model loaded: "

    def __init__(self, model):
        super().__init__()
        self.tied = tied_keys(model)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(self.PREFIX):
            return True
        try:
            keys = set(ast.literal_eval(message.removeprefix(self.PREFIX).rstrip(".")))
        except (ValueError, SyntaxError):
            return True
        return not keys <= self.tied


class LengthGrouped(torch.utils.data.Dataset):
    """The training records in batches of similar label length (transformers' megabatch grouping,
    drawn again from the seed each epoch), the lengths read from the shard index instead of from
    every record. The Trainer samples it in order (`train_sampling_strategy="sequential"`), and
    accelerate calls `set_epoch` at each epoch; the order is a shared-memory tensor, so dataloader
    workers, persistent ones too, see each epoch's."""

    def __init__(self, data: shards.ShardSet, batch_size: int, seed: int):
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.lengths = data.label_lengths().tolist()
        self.order = torch.zeros(len(data), dtype=torch.long).share_memory_()
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        self.order.copy_(
            torch.as_tensor(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))
        )

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict:
        return self.data[int(self.order[i])]


# ---------------------------------------------------------------- checkpoint averaging


class KeepBest(TrainerCallback):
    """After each save, removes the checkpoints that are neither among the n best by val score nor
    the latest (kept for resuming): what averaging needs, where save_total_limit keeps the latest."""

    def __init__(self, n: int, metric: str):
        self.n, self.metric = n, metric

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        keep = set(best_steps(checkpoint_scores(state.log_history, self.metric), self.n)) | {state.global_step}
        for step, path in saved_checkpoints(Path(args.output_dir)).items():
            if step not in keep:
                shutil.rmtree(path, ignore_errors=True)


def average_checkpoints(trainer: ShardTrainer, n: int, metric: str, log=print) -> dict:
    """Load into the trainer's model the mean of the n best checkpoints if it scores no worse on
    val than the best checkpoint (loaded at the end of training), else keep the best; say which.
    Every rank takes part (the evaluation is distributed); the main process writes the average."""
    state, directory = trainer.state, Path(trainer.args.output_dir)
    scores, saved = checkpoint_scores(state.log_history, metric), saved_checkpoints(directory)
    chosen = best_steps({step: score for step, score in scores.items() if step in saved}, n)
    record = {"asked": n, "steps": sorted(chosen), f"best_val_{metric}": state.best_metric}
    if len(chosen) < 2:
        log(f"checkpoint averaging: {len(chosen)} checkpoint to average; the best checkpoint is saved")
        return {**record, "saved": "best"}
    averaged = directory / AVERAGED
    if trainer.is_world_process_zero():
        write_average([saved[step] for step in chosen], averaged)
    trainer.accelerator.wait_for_everyone()
    load_weights(trainer.model, averaged)
    # Scored on the same val clips as every checkpoint; not early stopping's business any more.
    trainer.remove_callback(EarlyStoppingCallback)
    score = trainer.evaluate(metric_key_prefix="average")[f"average_{metric}"]
    accepted = score <= state.best_metric
    if not accepted:
        load_weights(trainer.model, Path(state.best_model_checkpoint))
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        shutil.rmtree(averaged)
    log(
        f"checkpoint averaging: steps {', '.join(map(str, sorted(chosen)))} average to val {metric} "
        f"{100 * score:.2f}% against the best checkpoint's {100 * state.best_metric:.2f}%: "
        + ("the average is saved" if accepted else "the best checkpoint is saved")
    )
    return {**record, f"average_val_{metric}": score, "saved": "average" if accepted else "best"}


# ---------------------------------------------------------------- resume


def run_fingerprint(model: Model, config: Train, train_set, val_set) -> str:
    """Identity of a run: resume only a run with the same inputs and parameters."""
    payload = {
        "model": model.model_dump(),
        "config": config.model_dump(),
        "data": [s.header.get("fingerprint") for s in (*train_set.shards, *val_set.shards)],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def claim_checkpoints(directory: Path, fingerprint: str, log=print) -> str | None:
    """`prepare_checkpoints` by the main process alone, then every process's checkpoint to resume
    from. Under torchrun the ranks would otherwise delete and recreate the directory at once."""
    state = PartialState()
    if state.is_main_process:
        prepare_checkpoints(directory, fingerprint, log)
    state.wait_for_everyone()
    return resume_point(directory, fingerprint)


# ---------------------------------------------------------------- the whole stage


def preflight(model: Model, config: Train, paths: Paths) -> tuple[shards.ShardSet, shards.ShardSet]:
    """Everything checked before a model is loaded: the scheduler's name, the base's files, the
    outputs (the pipeline's own or new, writable) and the disk they need; returns the splits."""
    schedulers = [kind.value for kind in SchedulerType]
    if config.lr_scheduler_type not in schedulers:
        raise ParamsError(
            f"train.lr_scheduler_type {config.lr_scheduler_type!r}: choose one of transformers' {', '.join(schedulers)}"
        )
    checks.require_model_files(model.base, "model.base")
    checks.require_outputs(checks.stage_outputs("train", paths))
    weights = checks.parameter_bytes(model.base)
    if weights:
        needed = disk_needed(config, weights) - checks.directory_size(paths.checkpoints)
        checks.require_space(paths.checkpoints, needed, "paths.checkpoints", "checkpoints and the saved model")
    return open_split(Path(paths.features) / "train"), open_split(Path(paths.features) / "val")


# Share of a Whisper's parameters each method trains (LoRA at r 32 on q and v: under 2%).
TRAINED_SHARE = {"full": 1.0, "freeze_encoder": 0.5, "lora": 0.02}


def disk_needed(config: Train, weights: int) -> float:
    """Bytes the run writes at most, from the base's fp32 weights: the checkpoints kept at once
    (weights and AdamW's two moments of what trains, one more while the next is written), the
    average, the result and the saved model."""
    kept = (config.average_checkpoints or config.save_total_limit or 2) + 1
    checkpoint = weights * (1 + 2 * TRAINED_SHARE[config.method])
    return kept * checkpoint + 3 * weights


def finetune(model: Model, config: Train, paths: Paths, log=print) -> dict:
    """Fine-tune `model.base` on the shards in `paths.features`; save a plain Whisper directory in
    `paths.model`; return the summary. Checkpoints go to `paths.checkpoints`, curves to `paths.curves`.
    A completed run with the same fingerprint is published again, not retrained."""
    train_set, val_set = preflight(model, config, paths)
    fingerprint = run_fingerprint(model, config, train_set, val_set)
    directory = Path(paths.checkpoints)
    done = completed_run(directory, fingerprint)
    if done:
        if not PartialState().is_main_process:
            return {}
        log(f"this run was completed before ({directory / FINAL}, same params and data): publishing it, not retraining")
        return publish(directory, paths, done, replay_curves=True)
    cuda = runtime.cuda_available()
    precision = runtime.precision(config.precision, cuda, "train.precision")
    runtime.reproducible(cuda)
    if cuda:
        runtime.set_matmul_precision()
    args = Seq2SeqTrainingArguments(**trainer_kwargs(config, paths.checkpoints, precision, cuda))
    # fp32 master weights whatever the checkpoint declares: bf16/fp16 only through autocast.
    net, attention = runtime.load_whisper(
        model.base,
        weights=torch.float32,
        compute_dtype=runtime.DTYPES[precision],
        attention=model.attention,
        cuda=cuda,
        log=log,
    )
    log(f"training in {precision} with {attention} attention on {args.device} (world size {args.world_size})")
    processor = WhisperProcessor.from_pretrained(model.base)
    prepare_model(net, model, config, train_set, val_set, processor)
    resume_from = claim_checkpoints(directory, fingerprint, log)
    trainer = build_trainer(apply_method(net, config), config, paths, args, train_set, val_set, processor, precision)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    wall = time.perf_counter() - start
    if result.global_step == 0:
        raise TrainingError("no training step ran: the run would publish the base model as the fine-tune")
    averaging = (
        average_checkpoints(trainer, config.average_checkpoints, config.metric_for_best_model, log)
        if config.average_checkpoints
        else None
    )
    if not trainer.is_world_process_zero():
        return {}
    summary = {
        "base": model.base,
        "method": config.method,
        "train_utterances": train_set.utterances(),  # per epoch: a packed window counts each of its own
        "train_records": len(train_set),  # windows: an utterance, or several packed
        "train_augmented_copies": sum(shards.COPY_MARK in i for i in train_set.ids()),
        "val_utterances": len(val_set),
        **run_summary(trainer, result, train_set, config.metric_for_best_model),
        **({"checkpoint_averaging": averaging} if averaging else {}),
        "precision": precision,
        "attention": attention,
        "world_size": args.world_size,
        "params": config.model_dump(),
    }
    clock = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, StepClock))
    per_record = train_set.utterances() / len(train_set)
    windows_per_s = result.metrics.get("train_samples_per_second", 0.0)
    speed = {
        "wall_time_s": round(wall, 1),  # evaluations and checkpoints included
        "samples_per_s": round(windows_per_s, 2),  # training windows (records) over the wall time
        "utterances_per_s": round(windows_per_s * per_record, 2),
        # the steps alone (this process's, since a resume): forward, backward and optimizer
        "steps_s": round(clock.seconds, 1),
        "step_utterances_per_s": round(clock.epochs(trainer.state) * train_set.utterances() / clock.seconds, 2)
        if clock.seconds
        else None,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "peak_memory_gib": round(runtime.peak_memory_gib(cuda), 3),
        "peak_memory_of": "GPU, allocated" if cuda else "CPU process, resident",
    }
    save(trainer, directory / FINAL, summary)
    mark_completed(directory, speed, trainer.state.log_history)
    return publish(directory, paths, read_marker(directory)["completed"], replay_curves=False)


def publish(directory: Path, paths: Paths, done: dict, replay_curves: bool) -> dict:
    """A completed run's result (FINAL) copied to paths.model and its curves (redrawn from the log
    history where DVC removed them); returns its summary with the run's speed record under `speed`.
    The same for a run that just finished and for one completed before."""
    out = Path(paths.model)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(directory / FINAL, partial)
    if out.exists():  # the pipeline's own (preflight): an earlier fine-tune
        shutil.rmtree(out)
    partial.rename(out)
    if replay_curves:
        logger = DVCLiveLogger(paths.curves)
        logger.start(done["log_history"])
        logger.live.end()
    summary = json.loads((out / SUMMARY).read_text())
    return {**summary, "speed": done["speed"]}


def prepare_model(
    net: WhisperForConditionalGeneration, model: Model, config: Train, train_set, val_set, processor
) -> None:
    """Check that the base can learn these labels, and set what the saved model carries."""
    check_model(net, model.language, train_set, val_set, processor)
    # Generation settings travel with the model. The base's suppress_tokens, alignment_heads and
    # lang_to_id stay as they are: an empty suppress list makes deployed models hallucinate.
    net.generation_config.language = model.language
    net.generation_config.task = model.task
    net.generation_config.forced_decoder_ids = None
    net.config.forced_decoder_ids = None
    if config.gradient_checkpointing:
        net.config.use_cache = False
    set_spec_augment(net, config.spec_augment)


def build_trainer(
    net, config: Train, paths: Paths, args, train_set, val_set, processor, precision: str
) -> ShardTrainer:
    trainer_logger = logging.getLogger("transformers.trainer")
    for old in [f for f in trainer_logger.filters if isinstance(f, TiedKeysNotMissing)]:
        trainer_logger.removeFilter(old)  # an earlier run's in this process
    trainer_logger.addFilter(TiedKeysNotMissing(net))
    callbacks = [DVCLiveLogger(paths.curves), RunLoss(), StepClock()]
    if config.average_checkpoints:
        callbacks.append(KeepBest(config.average_checkpoints, config.metric_for_best_model))
    if config.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(config.early_stopping_patience, config.early_stopping_threshold))
    trainer = ShardTrainer(
        model=net,
        args=args,
        train_dataset=LengthGrouped(train_set, args.train_batch_size * args.gradient_accumulation_steps, args.seed)
        if config.group_by_length
        else train_set,
        eval_dataset=eval_subset(val_set, config.eval_max_samples, args.seed),
        data_collator=Collator(net.config.decoder_start_token_id, runtime.DTYPES[precision]),
        processing_class=processor,
        compute_metrics=cer_metrics(processor),
        callbacks=callbacks,
        max_new_tokens=config.eval_max_new_tokens,
    )
    if not args.disable_tqdm:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(ReadableProgress)
    return trainer


def run_summary(trainer: ShardTrainer, result, train_set: shards.ShardSet, metric: str) -> dict:
    """What the run did: steps, epochs, the best checkpoint and its score, loss (the same for the
    same inputs: the summary is part of the saved model, which DVC hashes)."""
    state = trainer.state
    return {
        "best_step": int(state.best_model_checkpoint.rsplit("-", 1)[1]) if state.best_model_checkpoint else None,
        f"best_val_{metric}": state.best_metric,
        "global_steps": result.global_step,
        "epochs": round(state.epoch or 0.0, 3),
        "samples_seen": round((state.epoch or 0.0) * len(train_set)),  # windows
        "utterances_seen": round((state.epoch or 0.0) * train_set.utterances()),
        "train_loss": trainer.run_loss().total / state.global_step,  # the whole run's, resumed or not
    }


def save(trainer: ShardTrainer, output_dir: Path, summary: dict) -> None:
    """The model, LoRA merged, as a plain Whisper directory with its processor and the summary; a
    model with non-finite weights is never saved."""
    model = plain_model(trainer.model)
    model.config.apply_spec_augment = False  # training's alone: deployed models never mask their input
    bad = runtime.nonfinite_parameter(model)
    if bad:
        raise TrainingError(f"the trained model has non-finite weights ({bad}); it was not saved")
    shutil.rmtree(output_dir, ignore_errors=True)  # FINAL, in the checkpoint directory this run marked
    model.save_pretrained(output_dir)
    save_processor(trainer.processing_class, output_dir)
    (output_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")


def save_processor(processor: WhisperProcessor, directory: str | Path) -> None:
    """The processor, with its preprocessor_config.json."""
    processor.save_pretrained(directory)
    save_preprocessor_config(processor, directory)


def save_preprocessor_config(processor: WhisperProcessor, directory: str | Path) -> None:
    """The feature extractor in its own preprocessor_config.json: transformers 5 keeps it inside
    processor_config.json only, and converters and faster-whisper read the former (without it
    faster-whisper assumes 80 mel bins, and a 128-mel large-v3 would decode noise)."""
    processor.feature_extractor.save_pretrained(directory)
