"""DVC stage `train`: data/features/{train,val} + model.base → models/finetuned/ (a plain Whisper directory)."""

import json

import click

from whisper_ko import params
from whisper_ko.training import TRAINER_KEYS, finetune

FEATURE_DIR = "data/features"


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def main(params_file):
    cfg, model = params.load(params_file, "train", "model")
    params.check_keys("train", cfg, TRAINER_KEYS | {"output_dir", "checkpoint_dir"})
    summary = finetune(
        base=model["base"],
        train_dir=f"{FEATURE_DIR}/train",
        val_dir=f"{FEATURE_DIR}/val",
        output_dir=cfg["output_dir"],
        checkpoint_dir=cfg["checkpoint_dir"],
        language=model.get("language", "ko"),
        task=model.get("task", "transcribe"),
        trainer_args={k: v for k, v in cfg.items() if k in TRAINER_KEYS},
    )
    click.echo(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
