"""DVC stage `export`: the fine-tune (paths.model) → a CTranslate2 model for faster-whisper
(paths.export), quantized as `export.quantization`, checked after conversion."""

import json

import click

from whisper_ko import config, deploy
from whisper_ko.cli import stage


@stage
def main(params_file):
    settings, paths = config.load(params_file, "export", "paths")
    record = deploy.export(paths.model, paths.export, settings.quantization)
    click.echo(json.dumps(record, indent=2))
    if not record["multilingual"] and record["languages"]:
        click.echo(
            f"warning: CTranslate2 takes {paths.export} for an English-only model (its vocabulary is smaller than "
            "multilingual Whisper's): faster-whisper will decode it without language and task tokens"
        )


if __name__ == "__main__":
    main()
