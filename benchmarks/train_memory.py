"""Estimate the peak GPU memory of one Whisper training step, without a GPU: estimates, not measurements.

What: the most bytes of tensors alive at once during one optimizer step as our training runs it
(Seq2SeqTrainer: fp32 master weights, bf16 autocast, SDPA, grad clipping, fused AdamW, grads set to
None after the step), per device, for methods full, full + activation checkpointing (per layer,
use_reentrant=False), freeze_encoder and lora (r=32 on q_proj, v_proj); then the largest per-device
batch whose estimate stays under 90% of an H100 80GB (81559 MiB).

How: the model is built and stepped under FakeTensorMode: tensors carry shapes and dtypes but no
data, so large-v3 at any batch costs seconds. A dispatch mode adds each new storage's bytes when an
op creates it and subtracts them when the storage dies, so the peak holds weights, AdamW states,
grads as they accumulate, the bf16 weight copies autocast caches, saved activations, checkpoint
recomputation and the vocabulary-sized loss tensors with no term written by hand. Fake tensors stay
on CPU (meta tensors ignore autocast and take SDPA's math path, keeping the T×T matrix). CPU
autocast gives Whisper's ops the dtypes CUDA autocast does (linear, conv, SDPA in bf16;
log_softmax in fp32; layer norms see the fp32 residual stream), and CPU SDPA runs its flash kernel,
which keeps q, k, v, out and logsumexp for backward, as the flash / memory-efficient kernels do
on H100. Every tensor either scales with the batch or not, so two runs (batch 2 and 4) give the
live bytes after each allocation as a + b·batch: the peak at any batch is exact from those two.

Leaves out: the CUDA context (~0.5 GiB), cuBLAS/cuDNN workspaces, kernels' internal scratch, the
allocator's rounding and fragmentation (the 10% headroom is for those), evaluation (generate), and
DDP's gradient buckets (4 B per trainable parameter when nproc_per_node > 1) unless --ddp. Labels
are padded to --label-tokens in every batch, the worst case. --validate compares the estimate with
a real step of a small random Whisper on this CPU (glibc heap in use, sampled after every op).

    python benchmarks/train_memory.py [--model all] [--label-tokens 128] [--batch 8 ...] [--ddp] [--validate]
"""

import ctypes
import functools
import warnings
import weakref
from unittest import mock

import click
import numpy as np
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map_only
from torch.utils.weak import WeakIdKeyDictionary
from transformers import WhisperForConditionalGeneration

from whisper_ko_fixtures import shapes

# PEFT still asks for the deprecated name in every forward; the warning would split the table.
warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)

GIB = 2**30
BUDGET = 0.9 * 81559 * 2**20  # an H100 80GB as nvidia-smi counts it, less 10% headroom
MODELS = ("small", "large-v3", "large-v3-turbo")  # --model all: these of shapes.SHAPES
TINY = (256, 4, 4, 4, 1024, 80, 51865)  # small enough to step for real on this CPU
METHODS = {
    "full": ("full", False),
    "full + ckpt": ("full", True),
    "freeze_encoder": ("freeze_encoder", False),
    "lora": ("lora", False),
}


class LiveBytes(TorchDispatchMode):
    """Bytes of the storages alive, recorded after each allocation (when a new peak can happen)."""

    def __init__(self, *tensors):
        super().__init__()
        self.live, self.trace, self.sizes = 0, [], WeakIdKeyDictionary()
        for t in tensors:
            self.track(t)
        self.start = self.live

    def track(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        entry = self.sizes.get(st)
        if entry is None:
            entry = self.sizes[st] = [st.nbytes()]
            # The weakref lives in the entry: the callback fires when the storage itself dies.
            entry.append(weakref.ref(st, lambda _, e=entry: self.free(e)))
            self.live += entry[0]
        elif entry[0] != st.nbytes():  # resized in place
            self.live += st.nbytes() - entry[0]
            entry[0] = st.nbytes()
        else:
            return
        self.trace.append(self.live)

    def free(self, entry) -> None:
        self.live -= entry[0]

    def mark_forward(self) -> None:
        self.after_forward = self.live

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tree_map_only(torch.Tensor, self.track, out)
        return out


class NativeDropout(torch.nn.Module):
    """F.dropout as it runs on CUDA (native_dropout, a bool mask saved); on CPU it saves a mask of x's dtype."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x):
        return torch.native_dropout(x, self.p, self.training)[0]


def build(shape: str | tuple, method: str, checkpointing: bool):
    config = shapes.config(shape)
    config._attn_implementation = "sdpa"
    model = WhisperForConditionalGeneration(config).train()
    if checkpointing:  # as Trainer does for activation_checkpointing=True, and training.py's use_cache
        model.activation_checkpointing_enable({"use_reentrant": False})
        model.config.use_cache = False
    if method == "freeze_encoder":
        model.freeze_encoder()
    if method == "lora":  # params.yaml's train.lora
        from peft import LoraConfig, get_peft_model

        # PEFT moves adapters to their base layer's device and dtype with Module.to, which cannot swap
        # fake parameters; all are fp32 on CPU already.
        with mock.patch.object(torch.nn.Module, "to", lambda module, *_, **__: module):
            model = get_peft_model(
                model, LoraConfig(r=32, lora_alpha=64, lora_dropout=0.05, target_modules=["q_proj", "v_proj"])
            )
        for module in list(model.modules()):
            for name, child in module.named_children():
                if isinstance(child, torch.nn.Dropout) and child.p > 0:
                    setattr(module, name, NativeDropout(child.p))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, fused=True)
    # One step on zero grads creates AdamW's two states: the estimated step is a later one.
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model, params, optimizer


def step(model, params, optimizer, batch: int, label_tokens: int, mode=LiveBytes) -> LiveBytes:
    """One training step as Seq2SeqTrainer takes it, under `mode` (a LiveBytes)."""
    state = [s for per_param in optimizer.state.values() for s in per_param.values()]
    with mode(*model.parameters(), *model.buffers(), *state) as live:
        config = model.config
        features = torch.randn(batch, config.num_mel_bins, 3000, dtype=torch.bfloat16)  # the collator's dtype
        labels = torch.randint(0, config.vocab_size, (batch, label_tokens))
        with torch.autocast("cpu", dtype=torch.bfloat16):  # accelerate wraps forward only, loss included
            loss = model(input_features=features, labels=labels).loss
        live.mark_forward()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)  # Trainer's max_grad_norm
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return live


def estimate(shape: str | tuple, method: str, checkpointing: bool, label_tokens: int):
    """(a, b, runs, trainable params): live bytes after each allocation = a + b·batch."""
    with FakeTensorMode():
        model, params, optimizer = build(shape, method, checkpointing)
        runs = [step(model, params, optimizer, batch, label_tokens) for batch in (2, 4)]
    two, four = (np.array(r.trace, dtype=np.float64) for r in runs)
    if two.shape != four.shape:
        raise RuntimeError("batch 2 and 4 allocate differently: live bytes are not linear in the batch")
    b = (four - two) / 2
    return two - 2 * b, b, runs, sum(p.numel() for p in params)


def largest_batch(a: np.ndarray, b: np.ndarray, budget: float) -> int:
    if (a > budget).any():
        return 0
    grows = b > 0
    return int(np.floor(((budget - a[grows]) / b[grows]).min())) if grows.any() else 10**6


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@functools.cache
def mallinfo2():
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2


def heap_in_use() -> int:
    """glibc's bytes handed out by malloc (arenas + mmapped chunks): where torch's CPU tensors live."""
    info = mallinfo2()()
    return info.uordblks + info.hblkhd


class Heap(LiveBytes):
    """LiveBytes on real tensors, also sampling the malloc heap after every op."""

    def __init__(self, *tensors):
        super().__init__(*tensors)
        self.heap_start = self.heap_peak = heap_in_use()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = super().__torch_dispatch__(func, types, args, kwargs)
        self.heap_peak = max(self.heap_peak, heap_in_use())
        return out

    def mark_forward(self) -> None:
        super().mark_forward()
        self.heap_forward = heap_in_use()


def validate(label_tokens: int) -> None:
    """The estimate against a real step on this CPU (same kernels: flash SDPA, bf16 autocast), batch 2."""
    mib = 2**20
    click.echo(
        f"\nValidation: d_model {TINY[0]}, {TINY[1]}+{TINY[2]} layers, batch 2, {label_tokens} label tokens; "
        "MiB above the step's start (weights, AdamW states), estimated vs glibc heap in use\n"
    )
    click.echo("| method | end of forward est. | end of forward heap | step peak est. | step peak heap |")
    click.echo("|---|---:|---:|---:|---:|")
    for name, (method, checkpointing) in METHODS.items():
        est = estimate(TINY, method, checkpointing, label_tokens)[2][0]  # the fake run at batch 2
        torch.manual_seed(0)
        real = step(*build(TINY, method, checkpointing), 2, label_tokens, Heap)
        click.echo(
            f"| {name} | {(est.after_forward - est.start) / mib:.1f} | "
            f"{(real.heap_forward - real.heap_start) / mib:.1f} | {(max(est.trace) - est.start) / mib:.1f} | "
            f"{(real.heap_peak - real.heap_start) / mib:.1f} |"
        )


@click.command()
@click.option(
    "--model",
    "model_name",
    type=click.Choice([*shapes.SHAPES, "all"]),
    default="all",
    show_default=True,
    help=f"A shape of whisper_ko_fixtures.shapes; all: {', '.join(MODELS)}.",
)
@click.option("--label-tokens", default=128, show_default=True, help="Label length every batch is padded to.")
@click.option(
    "--batch",
    "batches",
    multiple=True,
    type=int,
    default=(8, 16, 32, 64),
    show_default=True,
    help="Per-device batch size (repeatable).",
)
@click.option("--ddp", is_flag=True, help="Add DDP's gradient buckets (nproc_per_node > 1).")
@click.option("--validate", "run_validation", is_flag=True, help="Also compare with a real step of a small model.")
def main(model_name, label_tokens, batches, ddp, run_validation):
    names = list(MODELS) if model_name == "all" else [model_name]
    click.echo(
        f"Estimated peak GiB of one training step per device ({label_tokens} label tokens, bf16 autocast, "
        f"fused AdamW{', DDP buckets' if ddp else ''}); max batch: estimate ≤ {BUDGET / GIB:.1f} GiB "
        "(90% of an H100 80GB)\n"
    )
    click.echo(f"| model | method | trainable M | {' | '.join(f'B={b}' for b in batches)} | max batch |")
    click.echo(f"|---|---|---:|{'---:|' * len(batches)}---:|")
    for name in names:
        for label, (method, checkpointing) in METHODS.items():
            a, b, _, trainable = estimate(name, method, checkpointing, label_tokens)
            if ddp:  # buckets: a flat fp32 copy of the grads, held from the first step on
                a = a + 4 * trainable
            peaks = " | ".join(f"{(a + b * batch).max() / GIB:.1f}" for batch in batches)
            click.echo(f"| {name} | {label} | {trainable / 1e6:.1f} | {peaks} | {largest_batch(a, b, BUDGET)} |")
    if run_validation:
        validate(label_tokens)


if __name__ == "__main__":
    main()
