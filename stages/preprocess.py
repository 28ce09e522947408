"""DVC stage `preprocess`: manifests (train, val) → data/features/{train,val}/ shards + reports/preprocess.json."""

import json
from pathlib import Path

import click

from whisper_ko import manifest, params
from whisper_ko.preprocess import Settings, preprocess_split

MANIFEST_DIR = Path("data/manifests")
FEATURE_DIR = Path("data/features")
REPORT = Path("reports/preprocess.json")
SPLITS = ("train", "val")
KEYS = {"dtype", "max_label_tokens", "min_duration", "shard_size", "workers"}


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def main(params_file):
    cfg, model = params.load(params_file, "preprocess", "model")
    params.check_keys("preprocess", cfg, KEYS)
    params.check_keys("model", model, params.MODEL_KEYS)
    settings = Settings(
        model=model["base"],
        language=model.get("language", "ko"),
        task=model.get("task", "transcribe"),
        dtype=cfg.get("dtype", "float16"),
        max_label_tokens=cfg.get("max_label_tokens", 448),
        min_duration=cfg.get("min_duration", 0.1),
    )
    report = {}
    for split in SPLITS:
        rows = manifest.read(MANIFEST_DIR / f"{split}.jsonl")
        report[split] = preprocess_split(
            rows, FEATURE_DIR / split, settings, shard_size=cfg.get("shard_size", 1000), workers=cfg.get("workers")
        )
        click.echo(f"{split}: {report[split]['kept']} kept, {report[split]['skipped']}")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
