"""DVC stage `corpus` (always run): discover.root → its listing (paths.listing), discover's dependency
in place of the corpus itself. An unchanged corpus costs one directory walk and reruns nothing."""

import click

from whisper_ko import checks, config, listing
from whisper_ko.errors import UserError


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def main(params_file):
    try:
        settings, paths = config.load(params_file, "discover", "paths")
        checks.require_outputs(checks.stage_outputs("corpus", paths))
        n = listing.write(settings.root, paths.listing)
    except UserError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"{paths.listing}: {n} files under {settings.root}")


if __name__ == "__main__":
    main()
