"""Whole calls and Whisper's loop guards for any models side by side, outside the pipeline: the
benchmark stage's long-form track and guards on/off table, plus what the guards cost in decoding
time. Made to ask whether a fine-tune trained without timestamps still transcribes a call, e.g.
the recipes `benchmarks/packing.py` trained (single clips, packed windows without timestamps,
packed windows with them):

    python benchmarks/long_form.py \\
        --model single-clips=checkpoints/packing/single-clips--today/model \\
        --model packed=checkpoints/packing/packed/model \\
        --model packed-timestamps=checkpoints/packing/packed---timestamps-0-5/model

Params (decoding, `benchmark.fallback`, `benchmark.long_form`, the test manifest) come from
--params. Prints Markdown; --out also writes it.
"""

from pathlib import Path

import click

from whisper_ko import config, evaluation, manifest, report


def guard_costs(found: evaluation.Run) -> str:
    """Decoding seconds of each model's utterances with the guards over without (all workers)."""
    lines = ["| model | decoding s, guards off | on | on / off |", "|---|---|---|---|"]
    for alias, guards in found.guards.items():
        off, on = (sum(t.decode_s for t in r.transcripts.timings) for r in (guards.off, guards.on))
        lines.append(f"| {alias} | {off:.1f} | {on:.1f} | {on / off:.2f}× |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True)
@click.option("--model", "models", multiple=True, required=True, help="alias=directory (repeat)")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Also write the Markdown here.")
def main(params_file, models, out):
    settings, model, paths = config.load(params_file, "benchmark", "model", "paths")
    pairs = dict(m.split("=", 1) for m in models)
    settings = settings.model_copy(update={"fallback": settings.fallback.model_copy(update={"compare": True})})
    rows = manifest.read_split(paths.manifests, "test")
    found = evaluation.benchmark(settings, model, rows, pairs)
    text = "\n".join(
        [
            report.group_tables(found.results),
            report.calls_section(found.calls, settings) if found.calls else "",
            report.guards_section(found.guards, settings),
            "## What the guards cost\n",
            guard_costs(found),
        ]
    )
    click.echo(text)
    if out:
        out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
