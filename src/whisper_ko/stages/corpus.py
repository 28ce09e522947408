"""DVC stage `corpus` (always run): discover.root → its listing (paths.listing), discover's dependency
in place of the corpus itself. An unchanged corpus costs one directory walk and reruns nothing."""

import click

from whisper_ko import checks, config, listing
from whisper_ko.cli import stage


@stage
def main(params_file):
    settings, paths = config.load(params_file, "discover", "paths")
    checks.require_outputs(checks.stage_outputs("corpus", paths))
    n = listing.write(settings.root, paths.listing)
    click.echo(f"{paths.listing}: {n} files under {settings.root}")


if __name__ == "__main__":
    main()
