"""DVC stage `train`: feature shards (paths.features) + model.base → paths.model (a plain Whisper
directory), the curves (paths.curves) and their figure; this run's speed apart (paths.speed).

With `train.nproc_per_node` > 1 the stage relaunches itself under torchrun (one process per GPU).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import click

from whisper_ko import config
from whisper_ko.cli import stage


@stage
def main(params_file):
    train, model, paths = config.load(params_file, "train", "model", "paths")
    if train.nproc_per_node > 1 and "LOCAL_RANK" not in os.environ:
        # --standalone: a free port and a local rendezvous, so two runs on one host never collide.
        launch = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={train.nproc_per_node}",
        ]
        sys.exit(subprocess.call([*launch, "-m", "whisper_ko.stages.train", "--params", params_file]))
    from whisper_ko.training import finetune  # torch and transformers: only once a run starts

    summary = finetune(model, train, paths, log=click.echo)
    if not summary:  # a rank other than the main one under torchrun: the main one writes
        return
    speed = Path(paths.speed) / "train.json"
    speed.parent.mkdir(parents=True, exist_ok=True)
    speed.write_text(json.dumps(summary["speed"], indent=2) + "\n")
    from whisper_ko import figures

    curves = Path(paths.reports) / config.CURVES_FIGURE
    if not figures.training_curves(Path(paths.curves), curves):
        curves.unlink(missing_ok=True)
    click.echo(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
