"""DVC stage `preprocess`: manifests (train, val) → feature shards per split (paths.features), the
training split with the augmented copies params ask for, and a report; this run's rate apart
(paths.speed)."""

import json
from pathlib import Path

import click

from whisper_ko import checks, config
from whisper_ko.cli import stage


@stage
def main(params_file):
    from whisper_ko import preprocess  # torch and transformers: only once a run starts

    settings, model, paths = config.load(params_file, "preprocess", "model", "paths")
    checks.require_outputs(checks.stage_outputs("preprocess", paths))
    checks.require_model_files(model.base, "model.base")
    if settings.noise.root:
        preprocess.noise_files(settings.noise.root)
    manifests = preprocess.read_manifests(paths.manifests)
    preprocess.require_space(manifests, paths.features, model, settings)
    report, speed = {}, {}
    for split, rows in manifests.items():
        out = Path(paths.features) / split
        report[split] = preprocess.preprocess_split(rows, out, model, settings, augment=split == "train")
        speed[split] = report[split].pop("speed")
        copies = "".join(f", {c['kept']} {name} copies" for name, c in report[split]["copies"].items())
        click.echo(f"{split}: {report[split]['kept']} kept{copies}, skipped {report[split]['skipped'] or 'none'}")
        if windows := report[split].get("windows"):
            click.echo(
                f"{split}: {windows['count']} packed windows of {windows['utterances_per_window']} utterances on "
                f"average ({100 * windows['speech_fill']:.0f}% speech, {windows['tokens_per_window']} label "
                f"tokens), {windows['timestamped']} timestamped; {windows['single_planned']} utterances also single"
            )
        for why in speed[split]["repaired"]:
            click.echo(f"rewrote a shard that failed verification: {why}")
    for path, content in (
        (Path(paths.reports) / "preprocess.json", report),
        (Path(paths.speed) / "preprocess.json", speed),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
