"""DVC stage `benchmark`: test manifest × `benchmark.models` → metrics, report, predictions, plot.

Quick look at one model (like the reference write-up's eval.py), printing only, no tracked output touched:
    python stages/benchmark.py --model models/finetuned --max-samples 50
"""

import json
from pathlib import Path

import click

from whisper_ko import config, evaluation, manifest, report
from whisper_ko.errors import UserError

TEST_MANIFEST = Path("data/manifests/test.jsonl")
METRICS = Path("metrics/benchmark.json")
REPORT = Path("reports/benchmark.md")
PLOT = Path("reports/benchmark_plot.json")
PREDICTIONS = Path("reports/predictions")


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True)
@click.option("--model", "single_model", default=None,
              help="Evaluate this one model (directory or hub id): prints, writes nothing.")
@click.option("--max-samples", type=click.IntRange(min=1), default=None,
              help="Seeded subset size (overrides benchmark.max_samples).")
def main(params_file, single_model, max_samples):
    try:
        settings, model = config.load(params_file, "benchmark", "model")
        results = score(settings, model, single_model, max_samples)
    except UserError as err:
        raise click.ClickException(str(err)) from err
    if single_model:
        result = results[single_model]
        click.echo(f"{single_model} on {len(result.predictions)} test utterances\n{report.summary(result, settings.seed)}")
        return
    write_outputs(results, settings.seed)
    click.echo(report.group_tables(results))


def score(settings: config.Benchmark, model: config.Model, single_model: str | None, max_samples: int | None):
    """Every model's (or the one given's) results on the test manifest."""
    if not TEST_MANIFEST.is_file():
        raise UserError(f"{TEST_MANIFEST} not found: run the discover stage first")
    rows = manifest.read(TEST_MANIFEST)
    if not rows:
        raise UserError(f"{TEST_MANIFEST} is empty: nothing to benchmark")
    rows = evaluation.subset(rows, max_samples or settings.max_samples, settings.seed)
    return evaluation.benchmark(settings, model, rows, {single_model: single_model} if single_model else None)


def write_outputs(results: dict[str, evaluation.Result], seed: int) -> None:
    METRICS.parent.mkdir(parents=True, exist_ok=True)
    METRICS.write_text(json.dumps({alias: r.metrics for alias, r in results.items()}, indent=2) + "\n")
    for alias, r in results.items():
        manifest.write(PREDICTIONS / f"{alias}.jsonl", r.predictions)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(report.markdown(results, seed), encoding="utf-8")
    PLOT.write_text(json.dumps(report.plot_rows(results), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
