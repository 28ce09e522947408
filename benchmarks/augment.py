"""Which recipe makes a fine-tune listen rather than remember: fine-tunes of the real whisper-base
on the sample corpus with the remedies against memorising (docs/recipes.md), scored on the test's
unseen sentences (templates training never says) and its seen ones, with the wall time of each.

Every run has seed 0, the same data and TRAIN below (two epochs, batch 8); each row differs from
the one it is compared with in one thing:

- `frozen encoder`: the decoder alone trains (lr 2e-4), the best checkpoint by val no-space CER;
- `… + averaging`: train.average_checkpoints 2, the mean of the two best checkpoints if it is no
  worse on val. It is the same run as the row above it (keeping the two best checkpoints changes
  no step, and CPU training is deterministic), which is scored from its best checkpoint;
- `… + SpecAugment`: train.spec_augment.apply (Whisper's defaults: 5% of frames masked in spans of 10);
- `… + speed perturbation`: preprocess.speed_perturb [0.9, 1.1]: three times the training clips,
  so three times the steps for the same two epochs;
- `full fine-tune` (lr 3e-5: the encoder learns too) and `LoRA` (r 32 on q_proj and v_proj, lr 1e-3).

Val is held out by template (discover.val_by: template): its sentences are unlike training's, so
checkpoint choice and averaging reward listening. Each change on unseen sentences comes with a
paired bootstrap interval (the same utterances drawn for both rows).

A variant whose run finished (its `run.json` in --work, with the same settings) is not trained
again: a killed grid resumes where it stopped, and --only reruns the decoding of some rows.

    python benchmarks/augment.py [--params params.yaml] [--work checkpoints/augment] [--only NAME ...]
"""

import json
from pathlib import Path

import click
from recipes import decode_test, prepare, train

from whisper_ko import comparison, config
from whisper_ko.discover import discover

# The shared settings: the demo's when this was measured (single clips: packed windows are
# benchmarks/packing.py's), each epoch evaluated on the whole val split.
SINGLE_CLIPS = {"pack": {"by": None}}
TRAIN = {
    "method": "freeze_encoder",
    "learning_rate": 2e-4,
    "num_train_epochs": 2,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 12,
    "eval_max_samples": None,
    "eval_max_new_tokens": 48,
    "seed": 0,
}
SPEEDS = [0.9, 1.1]
BASE = "frozen encoder"
FULL = "full fine-tune"
# name → (preprocess changes, train changes, the row it is compared with). A run that averages
# checkpoints gives two rows: its best checkpoint under its own name, its saved model as
# `<name> + averaging` (the same run: keeping the two best checkpoints changes no step).
VARIANTS = {
    BASE: ({}, {"average_checkpoints": 2}, None),
    "frozen encoder + SpecAugment": ({}, {"spec_augment": {"apply": True}}, BASE),
    "frozen encoder + speed perturbation": ({"speed_perturb": SPEEDS}, {}, BASE),
    FULL: ({}, {"method": "full", "learning_rate": 3e-5, "average_checkpoints": 2}, BASE),
    "full fine-tune + SpecAugment": (
        {},
        {"method": "full", "learning_rate": 3e-5, "spec_augment": {"apply": True}},
        FULL,
    ),
    "LoRA": ({}, {"method": "lora", "learning_rate": 1e-3}, BASE),
}
AVERAGED = " + averaging"


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, help="discover, text, model.")
@click.option("--work", default="checkpoints/augment", show_default=True, help="Features, runs and results.")
@click.option("--only", multiple=True, type=click.Choice(list(VARIANTS)), help="Run these variants only.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="A quick check of the script itself.")
def main(params_file, work, only, max_steps):
    found, policy, model, benchmark = config.load(params_file, "discover", "text", "model", "benchmark")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    splits, _ = discover(found.model_copy(update={"val_by": "template"}), policy)
    click.echo(", ".join(f"{name} {len(rows)}" for name, rows in splits.items()) + " utterances (val by template)")

    runs, models, prepared = {}, {}, {}  # runs and models by row
    for name in only or VARIANTS:
        prep_changes, train_changes, against = VARIANTS[name]
        features = work / "features" / ("speed" if prep_changes else "plain")
        if features not in prepared:
            settings = config.Preprocess(**{**SINGLE_CLIPS, **prep_changes})
            prepared[features] = prepare(splits, model, settings, features)
        values = {**TRAIN, **train_changes, **({"max_steps": max_steps} if max_steps else {})}
        done, paths = train(name, values, values, work, features, model)
        run = {**done, "preprocess_s": prepared[features], "against": against}
        if values.get("average_checkpoints"):  # the best checkpoint is this row, the saved model the next
            best = Path(paths.checkpoints) / f"checkpoint-{done['summary']['best_step']}"
            runs[name], models[name] = {**run, "row_is": "best"}, str(best)
            runs[name + AVERAGED], models[name + AVERAGED] = {**run, "against": name, "row_is": "saved"}, paths.model
        else:
            runs[name], models[name] = {**run, "row_is": "saved"}, paths.model

    results, scoring = decode_test(models, splits["test"], model, benchmark)
    rows = table(results, runs, splits["test"], scoring)
    text = markdown(rows)
    click.echo("\n" + text)
    (work / "augment.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    (work / "augment.md").write_text(text)


def table(results, runs, test_rows, scoring) -> list[dict]:
    unseen = [i for i, row in enumerate(test_rows) if row.get("sentence") == "unseen"]
    rows = []
    for name, result in results.items():
        by_sentence = result.metrics["by_sentence"]
        row = {
            "variant": name,
            "unseen_cer_nospace": by_sentence["unseen"]["cer_nospace"],
            "unseen_ci": [
                by_sentence["unseen"].get("cer_nospace_ci_low"),
                by_sentence["unseen"].get("cer_nospace_ci_high"),
            ],
            "seen_cer_nospace": by_sentence["seen"]["cer_nospace"],
            "test_cer_nospace": result.metrics["overall"]["cer_nospace"],
            "n_unseen": len(unseen),
        }
        run = runs[name]
        summary = run["summary"]
        averaging = summary.get("checkpoint_averaging") if run["row_is"] == "saved" else None
        row["val_cer_nospace"] = summary["best_val_cer_nospace"]
        if averaging:
            row["saved"] = averaging["saved"]
            if averaging["saved"] == "average":
                row["val_cer_nospace"] = averaging["average_val_cer_nospace"]
        row["train_clips"] = summary["train_utterances"]
        row["train_s"], row["features_s"] = round(run["train_s"], 1), round(run["preprocess_s"], 1)
        if run["against"] in results:
            change = comparison.compare(comparison.restrict(results, unseen), run["against"], name, scoring).cer_nospace
            row["against"] = run["against"]
            row["change_unseen"] = [change.change, change.ci_low, change.ci_high]
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}"
    lines = [
        "| recipe | unseen sentences: no-space CER (95% CI) | change on unseen (95% paired CI) | seen sentences | "
        "val (selection) | training clips | wall time: train + features |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        change = r.get("change_unseen")
        vs = (
            f"{100 * change[0]:+.1f} ({100 * change[1]:+.1f} to {100 * change[2]:+.1f}) vs {r['against']}"
            if change
            else "–"
        )
        wall = f"{r['train_s'] / 60:.1f} + {r['features_s'] / 60:.1f} min"
        name = r["variant"] + (f" (saved: {r['saved']})" if "saved" in r else "")
        lines.append(
            f"| {name} | {pct(r['unseen_cer_nospace'])} ({pct(r['unseen_ci'][0])}–{pct(r['unseen_ci'][1])}) | {vs} | "
            f"{pct(r['seen_cer_nospace'])} | {pct(r['val_cer_nospace'])} | {r['train_clips']} | {wall} |"
        )
    n = rows[0]["n_unseen"] if rows else 0
    return "\n".join(lines) + f"\n\nNo-space CER in %, on the test split's {n} utterances of unseen sentences.\n"


if __name__ == "__main__":
    main()
