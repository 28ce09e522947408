"""DVC stage `benchmark`: the test manifest × the fine-tune (paths.model), its export (paths.export)
and `benchmark.models` →
quality metrics (paths.metrics), report, figure, predictions and plot (paths.reports); speed apart
(paths.speed), since it varies from run to run.

Quick look at one model, printing only, no tracked output touched:
    whisper-ko benchmark --model models/finetuned --max-samples 50
"""

import json
from pathlib import Path

import click

from whisper_ko import checks, config, manifest
from whisper_ko.cli import stage
from whisper_ko.errors import UserError


@stage
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
    from whisper_ko import evaluation, report, scoring  # torch and transformers: only once a run starts

    settings, model, paths = config.load(params_file, "benchmark", "model", "paths")
    if not single_model:  # a quick look prints only
        checks.require_outputs(checks.stage_outputs("benchmark", paths))
    rows = manifest.read_split(paths.manifests, "test")
    rows = scoring.subset(rows, max_samples or settings.max_samples, settings.seed)
    if not rows:
        raise UserError(f"{Path(paths.manifests) / 'test.jsonl'} is empty: nothing to benchmark")
    models = {**settings.models, config.FINETUNED: paths.model, config.EXPORTED: paths.export}
    if single_model:  # a quick look: the utterances only, decoded as the params say
        models = {single_model: single_model}
        settings = settings.model_copy(
            update={
                "fallback": settings.fallback.model_copy(update={"compare": False}),
                "long_form": config.LongForm(apply=False),
            }
        )
    found = evaluation.benchmark(settings, model, rows, models)
    if single_model:
        result = found.results[single_model]
        click.echo(f"{single_model} on {len(rows)} test utterances\n{report.summary(result, settings.seed)}")
        return
    write_outputs(found, paths, settings)
    click.echo(report.speed_markdown(found))
    click.echo(report.group_tables(found.results))
    click.echo(report.verdict(found.comparisons))


def write_outputs(found, paths: config.Paths, settings: config.Benchmark) -> None:
    """`found`: the evaluation.Run of the benchmark."""
    from whisper_ko import figures, report

    quality = {alias: r.metrics for alias, r in found.results.items()}
    for c in found.comparisons:  # vs_base: the fine-tune against zero-shot; vs_source: an export against its source
        quality[c.candidate] = {**quality[c.candidate], f"vs_{c.kind}": c.metrics()}
    for alias, guards in found.guards.items():
        quality[alias] = {**quality[alias], "guards": report.guards_metrics(guards)}
    for alias, methods in found.calls.items():
        quality[alias] = {**quality[alias], "long_form": {method: r.metrics for method, r in methods.items()}}
    _write(Path(paths.metrics), json.dumps(quality, indent=2) + "\n")
    speed = Path(paths.speed)
    _write(speed / "benchmark.json", json.dumps(report.speed_rows(found), indent=2) + "\n")
    _write(speed / "benchmark.md", report.speed_markdown(found))
    reports = Path(paths.reports)
    predictions = reports / "predictions"
    for alias, r in found.results.items():
        manifest.write(predictions / f"{alias}.jsonl", r.predictions)
    for alias, guards in found.guards.items():
        _, other = guards.switched
        manifest.write(
            predictions / f"{alias}.{'without' if guards.applied else 'with'}_guards.jsonl", other.predictions
        )
    for alias, methods in found.calls.items():
        for method, r in methods.items():
            manifest.write(predictions / f"{alias}.long_form.{method}.jsonl", r.predictions)
    figures.cer_by_category(quality, reports / config.CER_FIGURE)
    if found.calls:
        calls = {key: r.metrics for key, r in report.flat_calls(found.calls).items()}
        figures.cer_by_category(calls, reports / config.LONG_FORM_FIGURE, figures.LONG_FORM_TITLE)
    else:
        figures.note(reports / config.LONG_FORM_FIGURE, "benchmark.long_form.apply is false: no whole calls decoded")
    curves = (reports / config.CURVES_FIGURE).is_file()
    _write(reports / "benchmark.md", report.markdown(found, settings, curves, paths.speed))
    plot = report.plot_rows(found.results)
    _write(reports / "benchmark_plot.json", json.dumps(plot, ensure_ascii=False, indent=1) + "\n")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
