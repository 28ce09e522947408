"""DVC stage `discover`: corpus → manifests per split (paths.manifests) + reports/discover.{json,md}."""

import json
from pathlib import Path

import click

from whisper_ko import checks, config, discover_report
from whisper_ko.cli import stage
from whisper_ko.discover import write_manifests


@stage
def main(params_file):
    settings, text, paths = config.load(params_file, "discover", "text", "paths")
    checks.require_outputs(checks.stage_outputs("discover", paths))
    found = write_manifests(settings, text, paths.manifests)
    out = Path(paths.reports) / "discover.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(found, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    markdown = discover_report.discover_markdown(found)
    out.with_suffix(".md").write_text(markdown, encoding="utf-8")
    click.echo(markdown)


if __name__ == "__main__":
    main()
