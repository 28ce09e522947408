"""DVC stage `discover`: corpus → data/manifests/{train,val,test}.jsonl + reports/discover.{json,md}."""

import json
from pathlib import Path

import click

from whisper_ko import config, manifest
from whisper_ko.discover import discover, report_markdown
from whisper_ko.errors import UserError

MANIFEST_DIR = Path("data/manifests")
REPORT = Path("reports/discover.json")


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def main(params_file):
    try:
        settings, text = config.load(params_file, "discover", "text")
        splits, report = discover(settings, text)
    except UserError as err:
        raise click.ClickException(str(err)) from err
    for split, rows in splits.items():
        manifest.write(MANIFEST_DIR / f"{split}.jsonl", rows)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    REPORT.with_suffix(".md").write_text(report_markdown(report), encoding="utf-8")
    click.echo(report_markdown(report))


if __name__ == "__main__":
    main()
