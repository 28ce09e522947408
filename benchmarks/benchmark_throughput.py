"""Our benchmark stage vs the naive loop, on the same clips and model, in one run; then memory.

1. ours: `whisper_ko.scheduling.transcribe`, as `whisper-ko benchmark` runs it: `--workers`
   single-threaded processes, batches sorted by duration, audio read per batch.
2. naive: `pipeline("automatic-speech-recognition")` called once per utterance, as people write
   it (audio read with our loader, since the pipeline's own file reading needs ffmpeg).

Prints samples/s of both (decoding only: process start, model load and one warm-up excluded for
both, as in RTFx; ours end to end as well) and the ratio. Then the peak RSS of a worker on the manifest and on
the manifest repeated 10×: audio is read per batch, so the two should be within 1.2×.

    python benchmarks/benchmark_throughput.py --manifest data/manifests/test.jsonl --model models/tiny-ko
"""

import dataclasses
import os
import time

import click
import torch
from transformers import pipeline

from whisper_ko import audio, config, dims, inference, manifest, scheduling


def ours(model: str, rows: list[dict], options: scheduling.Options) -> tuple[float, float, float]:
    """(decoding s, end-to-end s, worker peak RSS MB)."""
    start = time.perf_counter()
    found = scheduling.transcribe({"model": model}, rows, options)["model"]
    return max(t.wall_s for t in found.timings), time.perf_counter() - start, found.peak_rss_mb


def naive(model: str, rows: list[dict], decoding: inference.Decoding) -> tuple[float, float]:
    """(decoding s, end-to-end s) of the one-utterance-at-a-time pipeline loop."""
    start = time.perf_counter()
    asr = pipeline("automatic-speech-recognition", model=model, device="cpu")
    kwargs = {"language": decoding.language, "task": decoding.task, "max_new_tokens": decoding.max_new_tokens}

    def transcribe(row):
        asr({"raw": audio.load(row["audio"]), "sampling_rate": dims.SAMPLE_RATE}, generate_kwargs=kwargs)

    transcribe(rows[0])  # warm-up, as the benchmark stage's workers have one
    loaded = time.perf_counter()
    for row in rows:
        transcribe(row)
    end = time.perf_counter()
    return end - loaded, end - start


def repeated(rows: list[dict], times: int) -> list[dict]:
    return [{**row, "id": f"{row['id']}#{k}"} for k in range(times) for row in rows]


@click.command()
@click.option("--manifest", "manifest_path", default="data/manifests/test.jsonl", show_default=True)
@click.option("--model", default="models/tiny-ko", show_default=True)
@click.option("--clips", default=100, show_default=True, help="First N utterances of the manifest.")
@click.option("--max-new-tokens", default=64, show_default=True)
@click.option("--workers", default=2, show_default=True, help="Our CPU worker processes.")
@click.option("--batch-size", default=16, show_default=True)
@click.option(
    "--naive-threads",
    default=0,
    show_default=True,
    help="torch threads of the naive loop; 0 keeps torch's default (one per core), as people run it. "
    "On a busy machine 1 is faster: idle threads spin-wait for cores others hold.",
)
@click.option("--rss-max-new-tokens", default=8, show_default=True, help="Short decodes keep the 10× run quick.")
def main(manifest_path, model, clips, max_new_tokens, workers, batch_size, naive_threads, rss_max_new_tokens):
    if naive_threads:
        torch.set_num_threads(naive_threads)
    rows = manifest.read(manifest_path)[:clips]
    settings = config.Benchmark(
        max_new_tokens=max_new_tokens, batch_size=batch_size, cpu_workers=workers, fallback=config.Fallback(apply=False)
    )
    options = scheduling.Options.of(settings, config.Model(base=model))
    decoding = options.decoding
    audio_s = sum(r["duration"] for r in rows)
    click.echo(
        f"{len(rows)} clips, {audio_s / len(rows):.2f} s mean, {model}, max_new_tokens {max_new_tokens}, "
        f"{os.cpu_count()} cores, naive loop on {torch.get_num_threads()} threads, "
        f"load average before {os.getloadavg()[0]:.2f}"
    )

    our_decode, our_total, _ = ours(model, rows, options)
    naive_decode, naive_total = naive(model, rows, decoding)
    click.echo("| approach | samples/s (decoding) | RTFx | samples/s (end to end) |")
    click.echo("|---|---|---|---|")
    click.echo(
        f"| naive pipeline loop, 1 utterance at a time | {len(rows) / naive_decode:.2f} | "
        f"{audio_s / naive_decode:.1f} | {len(rows) / naive_total:.2f} |"
    )
    click.echo(
        f"| benchmark stage, {workers} workers × batch {batch_size} | {len(rows) / our_decode:.2f} | "
        f"{audio_s / our_decode:.1f} | {len(rows) / our_total:.2f} |"
    )
    click.echo(
        f"ratio ours / naive: {naive_decode / our_decode:.2f}× decoding, "
        f"{naive_total / our_total:.2f}× end to end (load average after {os.getloadavg()[0]:.2f})"
    )

    short = dataclasses.replace(options, decoding=dataclasses.replace(decoding, max_new_tokens=rss_max_new_tokens))
    _, _, rss_1 = ours(model, rows, short)
    _, _, rss_10 = ours(model, repeated(rows, 10), short)
    click.echo(
        f"worker peak RSS: {rss_1:.0f} MB on {len(rows)} utterances, {rss_10:.0f} MB on {10 * len(rows)} "
        f"({rss_10 / rss_1:.2f}×)"
    )


if __name__ == "__main__":
    main()
