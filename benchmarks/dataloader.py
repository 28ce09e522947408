"""Training input pipeline: our shards + Collator vs the reference approach's padded Arrow features + collator.

Both feed batches of Whisper's exact input (n_mels × 3000) and padded labels, from the same
utterances, through a torch DataLoader with one worker process and one thread:
  (a) whisper_ko: unpadded fp16 log-mels, zstd per record, memory-mapped (`whisper_ko.shards`),
      padded back in `whisper_ko.collate.Collator` and cast to the training dtype;
  (b) the reference approach: padded 30 s fp16 features stored with `Dataset.from_dict(...).save_to_disk`, read
      back as nested Python lists and converted in the collator of the Hugging Face Whisper
      fine-tuning blog (`feature_extractor.pad(...)` + `tokenizer.pad(...)`).
Prints samples/s for both and the ratio. Targets: ≥ 5× the reference approach and ≥ 500 samples/s on one core
(large-v3 trains at about 55 samples/s per H100, so the loader must never be what a GPU waits on).

    python benchmarks/dataloader.py --n-mels 128 --dtype bf16
"""

import time
from pathlib import Path

import click
import numpy as np
import torch
from datasets import Dataset, load_from_disk
from torch.utils.data import DataLoader
from transformers import WhisperProcessor

from whisper_ko import features, shards
from whisper_ko.collate import Collator
from whisper_ko.config import Discover, Model, Preprocess
from whisper_ko.discover import discover
from whisper_ko.preprocess import preprocess_split
from whisper_ko_fixtures import sample_corpus, tiny_model

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


class ReferenceCollator:
    """The blog's DataCollatorSpeechSeq2SeqWithPadding, as the reference approach uses it."""

    def __init__(self, processor: WhisperProcessor, decoder_start_token_id: int):
        self.processor = processor
        self.decoder_start_token_id = decoder_start_token_id

    def __call__(self, rows: list[dict]) -> dict:
        inputs = [{"input_features": row["input_features"]} for row in rows]
        batch = self.processor.feature_extractor.pad(inputs, return_tensors="pt")
        labels_batch = self.processor.tokenizer.pad([{"input_ids": row["labels"]} for row in rows], return_tensors="pt")
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)
        if (labels[:, 0] == self.decoder_start_token_id).all().cpu().item():
            labels = labels[:, 1:]
        batch["labels"] = labels
        return batch


def prepare(work: Path, corpus: Path, n_mels: int) -> tuple[Path, Path, Path]:
    """(model dir, our shard dir, reference Arrow dir) for the corpus's training utterances."""
    model = tiny_model.build(work / f"tiny-{n_mels}", n_mels=n_mels, texts=sample_corpus.training_texts())
    ours, reference = work / f"shards-{n_mels}", work / f"arrow-{n_mels}"
    if not reference.exists():
        rows = discover(Discover(root=str(corpus), val_fraction=0, workers=2), need_val=False)[0]["train"]
        preprocess_split(rows, ours, Model(base=str(model)), Preprocess(shard_size=500, workers=2))
        data = shards.open(ours)
        records = [data[i] for i in range(len(data))]
        Dataset.from_dict(
            {
                "input_features": [features.pad(r["input_features"]).astype(np.float16) for r in records],
                "labels": [r["labels"] for r in records],
            }
        ).save_to_disk(str(reference))
    return model, ours, reference


def samples_per_second(dataset, collate, batch_size: int, batches: int) -> float:
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=1,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(0),
        persistent_workers=True,
    )
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        seen += batch["input_features"].shape[0]
    return seen / (time.perf_counter() - start)


@click.command()
@click.option("--corpus", default="data/sample", show_default=True, type=click.Path(exists=True))
@click.option("--work", default="/tmp/whisper-ko-dataloader-bench", show_default=True, type=click.Path())
@click.option("--n-mels", default="128", show_default=True, type=click.Choice(["80", "128"]))
@click.option("--dtype", default="bf16", show_default=True, type=click.Choice(sorted(DTYPES)))
@click.option("--batch-size", default=16, show_default=True)
@click.option("--batches", default=40, show_default=True)
def main(corpus, work, n_mels, dtype, batch_size, batches):
    torch.set_num_threads(1)
    model, ours_dir, reference_dir = prepare(Path(work), Path(corpus), int(n_mels))
    processor = WhisperProcessor.from_pretrained(model)
    sot = processor.tokenizer.convert_tokens_to_ids("<|startoftranscript|>")

    ours = samples_per_second(shards.open(ours_dir), Collator(sot, DTYPES[dtype]), batch_size, batches)
    reference = samples_per_second(
        load_from_disk(str(reference_dir)), ReferenceCollator(processor, sot), batch_size, max(4, batches // 8)
    )
    click.echo(f"{n_mels} mels × 3000 frames, batch {batch_size}, one DataLoader worker, one thread")
    click.echo("| loader | samples/s |\n|---|---|")
    click.echo(f"| reference: padded fp16 in Arrow, nested lists → feature_extractor.pad | {reference:.1f} |")
    click.echo(f"| whisper_ko: shards + Collator ({dtype}) | {ours:.1f} |")
    verdict = "PASS" if ours / reference >= 5 and ours >= 500 else "FAIL"
    click.echo(f"ratio {ours / reference:.1f}x (target ≥ 5x), {ours:.0f} samples/s (target ≥ 500): {verdict}")


if __name__ == "__main__":
    main()
