"""DVC stage `export`: the fine-tune (paths.model) → a CTranslate2 model for faster-whisper
(paths.export), quantized as `export.quantization`, checked after conversion."""

import json

import click

from whisper_ko import config, deploy
from whisper_ko.errors import UserError


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def main(params_file):
    try:
        settings, paths = config.load(params_file, "export", "paths")
        record = deploy.export(paths.model, paths.export, settings.quantization)
    except UserError as err:
        raise click.ClickException(str(err)) from err
    click.echo(json.dumps(record, indent=2))
    if not record["multilingual"] and record["languages"]:
        click.echo(
            f"warning: CTranslate2 takes {paths.export} for an English-only model (its vocabulary is smaller than "
            "multilingual Whisper's): faster-whisper will decode it without language and task tokens"
        )


if __name__ == "__main__":
    main()
