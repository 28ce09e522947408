"""DVC stage `benchmark`: test manifest × models → metrics/benchmark.json, reports/benchmark.md, predictions.

Quick look at one model without touching tracked outputs:
    python stages/benchmark.py --model models/finetuned --max-samples 50
"""

import json
import random
from pathlib import Path

import click

from whisper_ko import benchmark, manifest, params

TEST_MANIFEST = Path("data/manifests/test.jsonl")
METRICS = Path("metrics/benchmark.json")
REPORT = Path("reports/benchmark.md")
PREDICTIONS = Path("reports/predictions")
KEYS = {"models", "batch_size", "num_beams", "max_new_tokens", "max_samples", "seed"}


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True)
@click.option("--model", "single_model", default=None, help="Evaluate this one model only; prints, writes nothing.")
@click.option("--max-samples", type=int, default=None, help="Seeded subset size (overrides benchmark.max_samples).")
def main(params_file, single_model, max_samples):
    cfg, model_cfg = params.load(params_file, "benchmark", "model")
    params.check_keys("benchmark", cfg, KEYS)
    rows = manifest.read(TEST_MANIFEST)
    if not rows:
        raise click.ClickException(f"{TEST_MANIFEST} is empty: nothing to benchmark")
    rows = benchmark.subset(rows, max_samples or cfg.get("max_samples"), cfg.get("seed", 0))
    decode = {
        "language": model_cfg.get("language", "ko"),
        "task": model_cfg.get("task", "transcribe"),
        "batch_size": cfg.get("batch_size", 16),
        "num_beams": cfg.get("num_beams", 1),
        "max_new_tokens": cfg.get("max_new_tokens", 128),
    }
    models = {"model": single_model} if single_model else cfg["models"]
    results = {alias: benchmark.score_model(path, rows, desc=alias, **decode) for alias, path in models.items()}
    tables = {alias: r["metrics"] for alias, r in results.items()}
    if single_model:
        _print_summary(results["model"], cfg.get("seed", 0))
        return
    METRICS.parent.mkdir(parents=True, exist_ok=True)
    METRICS.write_text(json.dumps(tables, indent=2) + "\n")
    PREDICTIONS.mkdir(parents=True, exist_ok=True)
    for alias, r in results.items():
        manifest.write(PREDICTIONS / f"{alias}.jsonl", r["predictions"])
    table = benchmark.markdown(tables)
    REPORT.write_text(f"# Benchmark: CER (%) on the test split, {len(rows)} utterances\n\n{table}", encoding="utf-8")
    click.echo(table)


def _print_summary(result: dict, seed: int) -> None:
    overall = result["metrics"]["overall"]
    click.echo(
        f"CER {100 * overall['cer']:.2f}%  CER(no space) {100 * overall['cer_nospace']:.2f}%  "
        f"WER {100 * overall['wer']:.2f}%  samples {overall['n']}  wall {overall['wall_s']} s  "
        f"{overall['samples_per_s']} samples/s"
    )
    sample = random.Random(seed).sample(result["predictions"], min(10, len(result["predictions"])))
    for p in sample:
        click.echo(f"\n  REF: {p['reference']}\n  HYP: {p['hypothesis']}")


if __name__ == "__main__":
    main()
