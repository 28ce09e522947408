"""DVC stage `train`: data/features/{train,val} + model.base → models/finetuned/ (a plain Whisper directory).

With `train.nproc_per_node` > 1 the stage relaunches itself under torchrun (one process per GPU).
"""

import json
import os
import subprocess
import sys

import click

from whisper_ko import params, runtime
from whisper_ko.training import OWN_KEYS, TRAINER_KEYS, TrainConfig, finetune

FEATURE_DIR = "data/features"


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def main(params_file):
    cfg, model = params.load(params_file, "train", "model")
    params.check_keys("train", cfg, TRAINER_KEYS | OWN_KEYS)
    params.check_keys("model", model, params.MODEL_KEYS)
    config = TrainConfig(**{k: v for k, v in cfg.items() if k in OWN_KEYS})
    if config.nproc_per_node > 1 and "LOCAL_RANK" not in os.environ:
        # --standalone: a free port and a local rendezvous, so two runs on one host never collide.
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                  f"--nproc_per_node={config.nproc_per_node}"]
        sys.exit(subprocess.call([*launch, __file__, "--params", params_file]))
    try:
        summary = finetune(
            base=model["base"],
            train_dir=f"{FEATURE_DIR}/train",
            val_dir=f"{FEATURE_DIR}/val",
            language=model.get("language", "ko"),
            task=model.get("task", "transcribe"),
            config=config,
            trainer_args={k: v for k, v in cfg.items() if k in TRAINER_KEYS},
            attention=model.get("attention", "sdpa"),
            log=click.echo,
        )
    except runtime.DeviceError as err:
        raise click.ClickException(str(err)) from err
    if summary:
        click.echo(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
