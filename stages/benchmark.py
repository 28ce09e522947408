"""DVC stage `benchmark`: the test manifest × the fine-tune (paths.model) and `benchmark.models` →
metrics (paths.metrics), report, predictions and plot (paths.reports).

Quick look at one model, printing only, no tracked output touched:
    python stages/benchmark.py --model models/finetuned --max-samples 50
"""

import json
from pathlib import Path

import click

from whisper_ko import config, evaluation, manifest, report
from whisper_ko.errors import UserError


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True)
@click.option(
    "--model",
    "single_model",
    default=None,
    help="Evaluate this one model (directory or hub id): prints, writes nothing.",
)
@click.option(
    "--max-samples",
    type=click.IntRange(min=1),
    default=None,
    help="Seeded subset size (overrides benchmark.max_samples).",
)
def main(params_file, single_model, max_samples):
    try:
        settings, model, paths = config.load(params_file, "benchmark", "model", "paths")
        test = Path(paths.manifests) / "test.jsonl"
        if not test.is_file():
            raise UserError(f"{test} not found: run the discover stage first")
        rows = evaluation.subset(manifest.read(test), max_samples or settings.max_samples, settings.seed)
        if not rows:
            raise UserError(f"{test} is empty: nothing to benchmark")
        models = {single_model: single_model} if single_model else {**settings.models, config.FINETUNED: paths.model}
        results = evaluation.benchmark(settings, model, rows, models)
    except UserError as err:
        raise click.ClickException(str(err)) from err
    if single_model:
        result = results[single_model]
        click.echo(f"{single_model} on {len(rows)} test utterances\n{report.summary(result, settings.seed)}")
        return
    write_outputs(results, paths, settings.seed)
    click.echo(report.group_tables(results))


def write_outputs(results: dict[str, evaluation.Result], paths: config.Paths, seed: int) -> None:
    metrics, reports = Path(paths.metrics), Path(paths.reports)
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps({alias: r.metrics for alias, r in results.items()}, indent=2) + "\n")
    for alias, r in results.items():
        manifest.write(reports / "predictions" / f"{alias}.jsonl", r.predictions)
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "benchmark.md").write_text(report.markdown(results, seed), encoding="utf-8")
    plot = json.dumps(report.plot_rows(results), ensure_ascii=False, indent=1) + "\n"
    (reports / "benchmark_plot.json").write_text(plot, encoding="utf-8")


if __name__ == "__main__":
    main()
