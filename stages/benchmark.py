"""DVC stage `benchmark`: test manifest × `benchmark.models` → metrics, report, predictions, plot.

Quick look at one model (the seed's eval.py), printing only, no tracked output touched:
    python stages/benchmark.py --model models/finetuned --max-samples 50
"""

import json
from pathlib import Path

import click

from whisper_ko import benchmark, inference, manifest, metrics, params, report, runtime

TEST_MANIFEST = Path("data/manifests/test.jsonl")
METRICS = Path("metrics/benchmark.json")
REPORT = Path("reports/benchmark.md")
PLOT = Path("reports/benchmark_plot.json")
PREDICTIONS = Path("reports/predictions")
KEYS = {
    "models", "group_by", "batch_size", "warmup_batches", "num_beams", "max_new_tokens", "max_samples", "seed",
    "cpu_workers", "dtype", "batch_timeout_s", "bootstrap_resamples", "kocer",
}


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True)
@click.option("--model", "single_model", default=None,
              help="Evaluate this one model (directory or hub id): prints, writes nothing.")
@click.option("--max-samples", type=int, default=None, help="Seeded subset size (overrides benchmark.max_samples).")
def main(params_file, single_model, max_samples):
    cfg, model_cfg = params.load(params_file, "benchmark", "model")
    params.check_keys("benchmark", cfg, KEYS)
    params.check_keys("model", model_cfg, params.MODEL_KEYS)
    if not TEST_MANIFEST.is_file():
        raise click.ClickException(f"{TEST_MANIFEST} not found: run the discover stage first")
    rows = manifest.read(TEST_MANIFEST)
    if not rows:
        raise click.ClickException(f"{TEST_MANIFEST} is empty: nothing to benchmark")
    seed = cfg.get("seed", 0)
    rows = benchmark.subset(rows, max_samples or cfg.get("max_samples"), seed)
    options = benchmark.Options(
        decoding=inference.Decoding(
            language=model_cfg.get("language", "ko"),
            task=model_cfg.get("task", "transcribe"),
            num_beams=cfg.get("num_beams", 1),
            max_new_tokens=cfg.get("max_new_tokens", 128),
        ),
        batch_size=cfg.get("batch_size"),
        warmup_batches=cfg.get("warmup_batches", 1),
        dtype=cfg.get("dtype", "auto"),
        attention=model_cfg.get("attention", "sdpa"),
        cpu_workers=cfg.get("cpu_workers", 1),
        processor_fallback=model_cfg.get("base"),
        batch_timeout_s=cfg.get("batch_timeout_s", 600),
    )
    models = {single_model: single_model} if single_model else cfg["models"]
    try:
        results = benchmark.run(
            models,
            rows,
            options,
            group_by=benchmark.group_fields(rows, cfg.get("group_by") or []),
            kocer=cfg.get("kocer", False),
            resamples=cfg.get("bootstrap_resamples", 1000),
            seed=seed,
        )
    except (benchmark.BenchmarkError, inference.ModelError, metrics.ScoringError, runtime.DeviceError, ValueError) as err:
        raise click.ClickException(str(err)) from err
    if single_model:
        click.echo(f"{single_model} on {len(rows)} test utterances\n{report.summary(results[single_model], seed)}")
        return
    write_outputs(results, seed)
    click.echo(report.group_tables(results))


def write_outputs(results: dict[str, benchmark.Result], seed: int) -> None:
    METRICS.parent.mkdir(parents=True, exist_ok=True)
    METRICS.write_text(json.dumps({alias: r.metrics for alias, r in results.items()}, indent=2) + "\n")
    for alias, r in results.items():
        manifest.write(PREDICTIONS / f"{alias}.jsonl", r.predictions)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(report.markdown(results, seed), encoding="utf-8")
    PLOT.write_text(json.dumps(report.plot_rows(results), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
