"""`whisper-ko STAGE --params params.yaml`: the pipeline's stages as one command (dvc.yaml runs it).

A stage's module is imported only when that stage runs, and each keeps torch, transformers and the
other heavy imports inside its `main`, so `--help` and a params error answer at once."""

import functools
import importlib

import click

from whisper_ko.errors import UserError

# In pipeline order; each is whisper_ko.stages.<name>, whose `main` is a click command.
STAGES = ("check", "corpus", "discover", "preprocess", "train", "export", "benchmark")


def stage(function):
    """A stage's command: its `--params` option, and a UserError (a mistake the user can fix) as
    click's one-line `Error: …` with exit status 1 instead of a traceback."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except UserError as err:
            raise click.ClickException(str(err)) from err

    params = click.option("--params", "params_file", default="params.yaml", show_default=True, help="The params file.")
    return click.command()(params(run))


class Stages(click.Group):
    def list_commands(self, ctx):
        return list(STAGES)

    def get_command(self, ctx, name):
        if name not in STAGES:
            return None
        module = importlib.import_module(f"whisper_ko.stages.{name}")
        module.main.help = module.main.help or module.__doc__  # the stage module's docstring says what it does
        return module.main


@click.group(cls=Stages)
def main():
    """Fine-tune and benchmark Whisper for Korean: the DVC pipeline's stages (dvc.yaml runs them in order)."""


if __name__ == "__main__":
    main()
