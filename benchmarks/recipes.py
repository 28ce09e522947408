"""What the recipe benchmarks (augment.py, packing.py) share: feature shards made once per setting,
each recipe trained once (a finished run with the same settings is reused, so a killed grid resumes
where it stopped), and the test split decoded by every model."""

import json
import time
from pathlib import Path

import click

from whisper_ko import config, evaluation, scheduling, training
from whisper_ko.preprocess import preprocess_split
from whisper_ko.scoring import Scoring

RUN_DIRS = ("model", "checkpoints", "curves", "reports", "speed")  # each recipe's own, under --work


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def prepare(splits, model: config.Model, settings: config.Preprocess, out: Path) -> float:
    """Feature shards of train (as `settings` asks: copies, packing) and val; the seconds it took."""
    start, processed = time.perf_counter(), 0
    for split in ("train", "val"):
        report = preprocess_split(splits[split], out / split, model, settings, augment=split == "train")
        processed += report["speed"]["processed_now"]
    timing = out / "seconds.json"  # a rerun reuses the shards: their first making is the cost
    if processed or not timing.is_file():
        timing.write_text(json.dumps(time.perf_counter() - start) + "\n")
    return json.loads(timing.read_text())


def train(name: str, values: dict, key, work: Path, features: Path, model: config.Model) -> tuple[dict, config.Paths]:
    """The recipe's run record (`settings`: `key`, `summary`, `train_s`) and where it wrote: trained
    now with train params `values`, or read back if a finished run recorded the same `key`."""
    paths = config.Paths(features=str(features), **{d: str(work / slug(name) / d) for d in RUN_DIRS})
    record = work / slug(name) / "run.json"
    done = json.loads(record.read_text()) if record.is_file() else {}
    if done.get("settings") != key or not Path(paths.model).is_dir():
        click.echo(f"\n== {name}: training")
        start = time.perf_counter()
        summary = training.finetune(model, config.Train(**values), paths, log=click.echo)
        done = {"settings": key, "summary": summary, "train_s": time.perf_counter() - start}
        record.write_text(json.dumps(done, indent=2, ensure_ascii=False) + "\n")
    return done, paths


def decode_test(models: dict[str, str], rows: list[dict], model: config.Model, benchmark: config.Benchmark):
    """Every model's results on the test rows, scored by category and sentence (seen or unseen)
    with 1000 bootstrap resamples; and that scoring, for paired comparisons."""
    click.echo("\n== decoding the test split")
    # no warm-up and no loop guards: the recipes' decoding, whatever the params say
    settings = benchmark.model_copy(
        update={"warmup_batches": 0, "fallback": benchmark.fallback.model_copy(update={"apply": False})}
    )
    options = scheduling.Options.of(settings, model)
    scoring = Scoring(("category", "sentence"), kocer=False, resamples=1000, seed=0)
    return evaluation.run(models, rows, options, scoring), scoring
