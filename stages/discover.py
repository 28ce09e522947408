"""DVC stage `discover`: corpus → data/manifests/{train,val,test}.jsonl + reports/discover.{json,md}."""

import json
from pathlib import Path

import click

from whisper_ko import manifest, params
from whisper_ko.discover import TextPolicy, discover, report_markdown

MANIFEST_DIR = Path("data/manifests")
REPORT = Path("reports/discover.json")
KEYS = {
    "root", "layout", "category_pattern", "max_duration", "val_fraction", "val_max", "test_fraction",
    "max_per_category", "seed", "workers",
}


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True)
def main(params_file):
    cfg, text = params.load(params_file, "discover", "text")
    params.check_keys("discover", cfg, KEYS)
    params.check_keys("text", text, {"side", "fillers", "masked"})
    splits, report = discover(
        cfg["root"],
        layout=cfg.get("layout", "auto"),
        policy=TextPolicy(**text),
        category_pattern=cfg.get("category_pattern", r"D\d\d"),
        max_duration=cfg.get("max_duration", 30.0),
        val_fraction=cfg.get("val_fraction", 0.1),
        val_max=cfg.get("val_max"),
        test_fraction=cfg.get("test_fraction", 0.0),
        max_per_category=cfg.get("max_per_category"),
        seed=cfg.get("seed", 0),
        workers=cfg.get("workers"),
    )
    for split, rows in splits.items():
        manifest.write(MANIFEST_DIR / f"{split}.jsonl", rows)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    REPORT.with_suffix(".md").write_text(report_markdown(report), encoding="utf-8")
    click.echo(report_markdown(report))


if __name__ == "__main__":
    main()
