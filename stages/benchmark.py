"""DVC stage `benchmark`: the test manifest × the fine-tune (paths.model), its export (paths.export)
and `benchmark.models` →
quality metrics (paths.metrics), report, figure, predictions and plot (paths.reports); speed apart
(paths.speed), since it varies from run to run.

Quick look at one model, printing only, no tracked output touched:
    python stages/benchmark.py --model models/finetuned --max-samples 50
"""

import json
from pathlib import Path

import click

from whisper_ko import checks, config, evaluation, figures, manifest, report
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
        if not single_model:  # a quick look prints only
            checks.require_outputs(checks.stage_outputs("benchmark", paths))
        rows = manifest.read_split(paths.manifests, "test")
        rows = evaluation.subset(rows, max_samples or settings.max_samples, settings.seed)
        if not rows:
            raise UserError(f"{Path(paths.manifests) / 'test.jsonl'} is empty: nothing to benchmark")
        models = (
            {single_model: single_model}
            if single_model
            else {**settings.models, config.FINETUNED: paths.model, config.EXPORTED: paths.export}
        )
        results, comparisons = evaluation.benchmark(settings, model, rows, models)
    except UserError as err:
        raise click.ClickException(str(err)) from err
    if single_model:
        result = results[single_model]
        click.echo(f"{single_model} on {len(rows)} test utterances\n{report.summary(result, settings.seed)}")
        return
    write_outputs(results, comparisons, paths, settings.seed)
    click.echo(report.speed_markdown(results))
    click.echo(report.group_tables(results))
    click.echo(report.verdict(comparisons))


def write_outputs(
    results: dict[str, evaluation.Result], comparisons: list[evaluation.Comparison], paths: config.Paths, seed: int
) -> None:
    quality = {alias: r.metrics for alias, r in results.items()}
    for c in comparisons:  # vs_base: the fine-tune against zero-shot; vs_source: an export against its source
        quality[c.candidate] = {**quality[c.candidate], f"vs_{c.kind}": c.metrics()}
    _write(Path(paths.metrics), json.dumps(quality, indent=2) + "\n")
    speed = Path(paths.speed)
    _write(speed / "benchmark.json", json.dumps({alias: r.speed for alias, r in results.items()}, indent=2) + "\n")
    _write(speed / "benchmark.md", report.speed_markdown(results))
    reports = Path(paths.reports)
    for alias, r in results.items():
        manifest.write(reports / "predictions" / f"{alias}.jsonl", r.predictions)
    figures.cer_by_category(quality, reports / config.CER_FIGURE)
    curves = (reports / config.CURVES_FIGURE).is_file()
    _write(reports / "benchmark.md", report.markdown(results, comparisons, seed, curves, paths.speed))
    _write(reports / "benchmark_plot.json", json.dumps(report.plot_rows(results), ensure_ascii=False, indent=1) + "\n")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
