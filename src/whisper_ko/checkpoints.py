"""Operations on a run's checkpoint directory (paths.checkpoints), apart from the Trainer, as
fairseq's average_checkpoints is: which checkpoints are complete, the run marker that fingerprints
resume and reuse, averaging the best checkpoints' weights, and loading a checkpoint's weights into a
model through public APIs (safetensors, peft)."""

import json
import os
import shutil
from pathlib import Path

import safetensors.torch
import torch
from transformers.trainer import TRAINER_STATE_NAME  # written last into a checkpoint
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from whisper_ko.checks import RUN_MARKER, SUMMARY
from whisper_ko.errors import UserError

AVERAGED = "averaged"  # the averaged checkpoint while it is scored
FINAL = "final"  # the completed run's result, published to paths.model
WEIGHTS = ("model.safetensors", "adapter_model.safetensors")  # a whole model's, or a LoRA adapter's


def checkpoint_scores(log_history: list[dict], metric: str) -> dict[int, float]:
    """Val score per evaluated step, from a Trainer's log history."""
    key = f"eval_{metric}"
    return {entry["step"]: entry[key] for entry in log_history if key in entry}


def saved_checkpoints(directory: Path) -> dict[int, Path]:
    """Complete checkpoints by step: each holds what resuming from it restores (see `missing`)."""
    found = directory.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
    return {int(p.name.rsplit("-", 1)[1]): p for p in found if p.is_dir() and not missing(p)}


# What a checkpoint must hold to be resumed from: the Trainer's state (written last, so a kill while
# saving leaves it out), the weights (LoRA: the adapter's), and the optimizer's and scheduler's state
# (without them the Trainer resumes silently with a fresh AdamW and a restarted schedule).
CHECKPOINT_FILES = (
    (TRAINER_STATE_NAME,),
    WEIGHTS,
    ("optimizer.pt",),
    ("scheduler.pt",),
)


def missing(checkpoint: Path) -> list[str]:
    """The files of CHECKPOINT_FILES that `checkpoint` lacks (one name of each alternative)."""
    return [names[0] for names in CHECKPOINT_FILES if not any((checkpoint / name).is_file() for name in names)]


def best_steps(scores: dict[int, float], n: int) -> list[int]:
    """The n best steps by score (lower is better; the earlier step first in a tie)."""
    return sorted(scores, key=lambda step: (scores[step], step))[:n]


def write_average(checkpoints: list[Path], out: Path) -> None:
    """A checkpoint directory `out` whose weights are the parameter mean of `checkpoints`' (each
    safetensors file averaged, summed in float32), beside the first one's JSON files."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for path in checkpoints[0].glob("*.json"):
        shutil.copy2(path, out / path.name)
    for name in sorted(p.name for p in checkpoints[0].glob("*.safetensors")):
        total: dict[str, torch.Tensor] = {}
        dtypes: dict[str, torch.dtype] = {}
        for checkpoint in checkpoints:
            for key, tensor in safetensors.torch.load_file(checkpoint / name).items():
                if key not in total:
                    total[key], dtypes[key] = (tensor.float() if tensor.is_floating_point() else tensor), tensor.dtype
                elif tensor.is_floating_point():
                    total[key] += tensor
        mean = {
            key: (value / len(checkpoints)).to(dtypes[key]) if value.is_floating_point() else value
            for key, value in total.items()
        }
        safetensors.torch.save_file(mean, out / name, metadata={"format": "pt"})


def load_weights(model: torch.nn.Module, checkpoint: Path) -> None:
    """Load `checkpoint`'s weights into `model` in place: a LoRA adapter's into its PeftModel, or a
    whole model's. Keys the checkpoint leaves out because they are tied to another (Whisper's output
    projection is its decoder's embeddings) stay tied; any other difference is an error."""
    adapter = checkpoint / WEIGHTS[1]
    if adapter.is_file():
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, safetensors.torch.load_file(adapter))
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise UserError(f"{adapter}: keys this LoRA model does not have: {unexpected[:5]}")
        return
    result = model.load_state_dict(safetensors.torch.load_file(checkpoint / WEIGHTS[0]), strict=False)
    lost = set(result.missing_keys) - tied_keys(model)
    if lost or result.unexpected_keys:
        raise UserError(
            f"{checkpoint} does not match the model: missing {sorted(lost)[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )


def tied_keys(model: torch.nn.Module) -> set[str]:
    """Parameter names that share their tensor with an earlier one: a checkpoint stores them once."""
    every = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    return every - {name for name, _ in model.named_parameters()}


# ---------------------------------------------------------------- the run marker: resume and reuse


def read_marker(directory: Path) -> dict:
    marker = directory / RUN_MARKER
    return json.loads(marker.read_text()) if marker.is_file() else {}


def completed_run(directory: Path, fingerprint: str) -> dict | None:
    """The completion record of a finished run with this fingerprint, whose result is on disk."""
    previous = read_marker(directory)
    done = previous.get("completed")
    if previous.get("fingerprint") != fingerprint or not done or not (directory / FINAL / SUMMARY).is_file():
        return None
    return done


def resume_point(directory: Path, fingerprint: str, log=None) -> str | None:
    """The last complete checkpoint of an interrupted run with this fingerprint, or None. `log`:
    say which later checkpoints are passed over, and remove them (they are this run's own)."""
    previous = read_marker(directory)
    if previous.get("fingerprint") != fingerprint or previous.get("completed"):
        return None
    done = saved_checkpoints(directory)
    last = max(done, default=None)
    for path in sorted(directory.glob(f"{PREFIX_CHECKPOINT_DIR}-*")):
        step = int(path.name.rsplit("-", 1)[1])
        if log and step not in done and (last is None or step > last):
            log(
                f"{path} lacks {', '.join(missing(path))}: passed over, "
                + ("resuming from an earlier one" if last else "starting over")
            )
            shutil.rmtree(path)
    return str(done[last]) if last is not None else None


def prepare_checkpoints(directory: Path, fingerprint: str, log=print) -> None:
    """Keep the directory for `resume_point`, or clear it of another run, and mark it as this
    run's. Only a directory this stage marked (RUN_MARKER) is cleared, and only of what a run writes
    there; the output checks refused any other before the work began."""
    last = resume_point(directory, fingerprint, log)
    if last:
        log(f"resuming from {last}")
        return
    if directory.exists():
        previous = read_marker(directory)
        if previous and previous.get("fingerprint") != fingerprint:
            why = "parameters or data changed"
        elif previous.get("completed"):
            why = "the completed run's result is incomplete"
        else:
            why = "no complete checkpoint"
        log(f"starting fresh ({why}): clearing {directory}")
        for path in directory.iterdir():
            if path.name in (RUN_MARKER, FINAL, AVERAGED) or path.name.startswith(f"{PREFIX_CHECKPOINT_DIR}-"):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / RUN_MARKER).write_text(json.dumps({"fingerprint": fingerprint}) + "\n")


def mark_completed(directory: Path, speed: dict, log_history: list[dict]) -> None:
    """The run's result (FINAL) is complete: a rerun with the same fingerprint publishes it again
    instead of training (`completed_run`). Written after FINAL, before the stage's outputs."""
    record = {**read_marker(directory), "completed": {"speed": speed, "log_history": log_history}}
    partial = directory / f"{RUN_MARKER}.partial"
    partial.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(partial, directory / RUN_MARKER)
