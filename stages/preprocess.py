"""DVC stage `preprocess`: manifests (train, val) → data/features/{train,val}/ shards + reports/preprocess.json."""

import json
from pathlib import Path

import click

from whisper_ko import config, manifest
from whisper_ko.errors import UserError
from whisper_ko.preprocess import preprocess_split

MANIFEST_DIR = Path("data/manifests")
FEATURE_DIR = Path("data/features")
REPORT = Path("reports/preprocess.json")
SPLITS = ("train", "val")


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def main(params_file):
    try:
        settings, model = config.load(params_file, "preprocess", "model")
    except UserError as err:
        raise click.ClickException(str(err)) from err
    report = {}
    for split in SPLITS:
        rows = manifest.read(MANIFEST_DIR / f"{split}.jsonl")
        report[split] = preprocess_split(rows, FEATURE_DIR / split, model, settings)
        click.echo(f"{split}: {report[split]['kept']} kept, {report[split]['skipped']}")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
