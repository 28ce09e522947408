"""`whisper-ko STAGE --params params.yaml`: the pipeline's stages as one command (dvc.yaml runs it).

A stage's module is imported only when that stage runs, and each keeps torch, transformers and the
other heavy imports inside its `main`, so `--help` and a params error answer at once."""

import importlib

import click

# In pipeline order; each is whisper_ko.stages.<name>, whose `main` is a click command.
STAGES = ("check", "corpus", "discover", "preprocess", "train", "export", "benchmark")


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
