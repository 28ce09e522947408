"""DVC stage `train`: data/features/{train,val} + model.base → models/finetuned/ (a plain Whisper directory).

With `train.nproc_per_node` > 1 the stage relaunches itself under torchrun (one process per GPU).
"""

import json
import os
import subprocess
import sys

import click

from whisper_ko import config
from whisper_ko.errors import UserError
from whisper_ko.training import finetune

FEATURE_DIR = "data/features"


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def main(params_file):
    try:
        train, model = config.load(params_file, "train", "model")
        if train.nproc_per_node > 1 and "LOCAL_RANK" not in os.environ:
            # --standalone: a free port and a local rendezvous, so two runs on one host never collide.
            launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                      f"--nproc_per_node={train.nproc_per_node}"]
            sys.exit(subprocess.call([*launch, __file__, "--params", params_file]))
        summary = finetune(model, train, f"{FEATURE_DIR}/train", f"{FEATURE_DIR}/val", log=click.echo)
    except UserError as err:
        raise click.ClickException(str(err)) from err
    if summary:
        click.echo(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
