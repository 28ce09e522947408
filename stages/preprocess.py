"""DVC stage `preprocess`: manifests (train, val) → feature shards per split (paths.features), the
training split with the augmented copies params ask for, and a report; this run's rate apart
(paths.speed)."""

import json
from pathlib import Path

import click

from whisper_ko import config, manifest
from whisper_ko.errors import UserError
from whisper_ko.preprocess import noise_files, preprocess_split

SPLITS = ("train", "val")


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def main(params_file):
    try:
        settings, model, paths = config.load(params_file, "preprocess", "model", "paths")
        if settings.noise.root:
            noise_files(settings.noise.root)
    except UserError as err:
        raise click.ClickException(str(err)) from err
    report, speed = {}, {}
    for split in SPLITS:
        rows = manifest.read(Path(paths.manifests) / f"{split}.jsonl")
        report[split] = preprocess_split(rows, Path(paths.features) / split, model, settings, augment=split == "train")
        speed[split] = report[split].pop("speed")
        copies = "".join(f", {c['kept']} {name} copies" for name, c in report[split]["copies"].items())
        click.echo(f"{split}: {report[split]['kept']} kept{copies}, skipped {report[split]['skipped'] or 'none'}")
    for path, content in (
        (Path(paths.reports) / "preprocess.json", report),
        (Path(paths.speed) / "preprocess.json", speed),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
