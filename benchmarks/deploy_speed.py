"""transformers fp32 against faster-whisper on CTranslate2 exports of the same model, on the same
clips and cores, in one run: speed and accuracy side by side, ratios printed.

Every model is decoded by the benchmark stage's own workers (`--workers` single-threaded processes,
batches sorted by duration, one warm-up batch untimed), so the only difference is the engine:
transformers on the source directory, faster-whisper's batched pipeline on each export. The
exports are made here by the export stage's own function.

    python benchmarks/deploy_speed.py --model models/finetuned --manifest data/manifests/test.jsonl
"""

import tempfile
from pathlib import Path

import click

from whisper_ko import comparison, config, deploy, evaluation, manifest, scheduling
from whisper_ko.scoring import Scoring


@click.command()
@click.option("--model", default="models/finetuned", show_default=True, help="A plain Whisper directory.")
@click.option("--manifest", "manifest_path", default="data/manifests/test.jsonl", show_default=True)
@click.option("--quantization", "quantizations", multiple=True, default=["int8", "float32"], show_default=True)
@click.option("--workers", default=2, show_default=True, help="CPU worker processes, one thread each.")
@click.option("--batch-size", default=16, show_default=True)
@click.option("--max-new-tokens", default=48, show_default=True)
def main(model, manifest_path, quantizations, workers, batch_size, max_new_tokens):
    rows = manifest.read(manifest_path)
    settings = config.Benchmark(
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        warmup_batches=1,
        cpu_workers=workers,
        bootstrap_resamples=1000,
        fallback=config.Fallback(apply=False),
    )
    options = scheduling.Options.of(settings, config.Model(base=model))
    scoring = Scoring.of(settings, rows)
    with tempfile.TemporaryDirectory() as tmp:
        models = {"transformers fp32": model}
        for quantization in quantizations:
            models[f"faster-whisper {quantization}"] = deploy.export(model, Path(tmp) / quantization, quantization)[
                "path"
            ]
        results = evaluation.run(models, rows, options, scoring)
        parity = {c.candidate: c for c in comparison.comparisons(results, models, model, scoring)}
    reference = results["transformers fp32"]
    audio_h = sum(row["duration"] for row in rows) / 3600
    click.echo(f"{len(rows)} clips ({audio_h * 60:.1f} min of audio), {workers} workers × 1 thread, batch {batch_size}")
    header = ["engine", "samples/s", "RTFx per device", "× transformers", "no-space CER %", "change", "changed"]
    click.echo("| " + " | ".join(header) + " |\n" + "|---" * len(header) + "|")
    for alias, result in results.items():
        speed, c = result.speed, parity.get(alias)
        ns = c.cer_nospace if c else None
        cells = [
            alias,
            speed["samples_per_s"],
            speed["rtfx_per_device"],
            f"{speed['samples_per_s'] / reference.speed['samples_per_s']:.2f}",
            f"{100 * result.metrics['overall']['cer_nospace']:.2f}",
            f"{100 * ns.change:+.2f} ({100 * ns.ci_low:+.2f} to {100 * ns.ci_high:+.2f})" if ns else "–",
            f"{100 * c.changed:.1f}%" if c else "–",
        ]
        click.echo("| " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
