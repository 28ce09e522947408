"""Packed training windows against today's single clips: full fine-tunes of the real whisper-base on
the sample corpus, the same cores and training utterances throughout, side by side in one run.

Each recipe reports:
- training speed in utterances per second of training steps (forward, backward, optimizer; a
  packed window counts each of its utterances), its ratio to single clips', and the run's wall time
  (evaluations and checkpoints included);
- no-space CER on the test split's unseen sentences, with a paired 95% bootstrap interval of the
  change against single clips (the same utterances drawn for both);
- timestamps: `generate(return_timestamps=True)` on packed val windows (val utterances packed by
  category, gaps as preprocess.pack draws them), the median distance from each true segment
  boundary to the nearest predicted one, the segments cut per true utterance, and the share of
  windows given any timestamp at all. The base model is scored too.

The packed recipes share one setting, chosen on val in pilot runs (below: PACKED); single clips keep
the demo's former recipe. A recipe whose run finished (its `run.json` in --work, same settings) is not trained again.

    python benchmarks/packing.py [--params params.yaml] [--work checkpoints/packing] [--only NAME ...]
    python benchmarks/packing.py --tables-only   # window fill on a large corpus, the presets' calculated gain
"""

import json
import statistics
from pathlib import Path

import click
import numpy as np
import torch
from recipes import decode_test, prepare, slug, train

from whisper_ko import comparison, config, features, labels, packing, runtime, shards, timestamps
from whisper_ko.discover import discover
from whisper_ko.preprocess import preprocess_split
from whisper_ko_fixtures import shapes

# Every recipe: the whole model, seed 0, each epoch evaluated on all of val.
COMMON = {"method": "full", "per_device_eval_batch_size": 12, "eval_max_samples": None, "eval_max_new_tokens": 48}
SINGLE = "single clips (today)"
TODAY = {"learning_rate": 3e-5, "num_train_epochs": 2, "per_device_train_batch_size": 8}
# A packed epoch is 28 windows of five utterances: batches of 4 give 7 steps an epoch, each with
# 20 utterances (today: 18 steps of 8). Chosen on val (lr 1e-4 overshot; best epoch 3 of 5 at 5e-5).
PACKED = {"learning_rate": 5e-5, "num_train_epochs": 4, "per_device_train_batch_size": 4}
BY = "category"  # the sample corpus's calls are 15-39 s: by session, windows hold 4.1 utterances, by category 5.0
# name → (preprocess.pack, train changes)
RECIPES = {
    SINGLE: ({"by": None}, TODAY),
    "packed": ({"by": BY, "timestamps": 0.0}, PACKED),
    "packed + timestamps 0.5": ({"by": BY, "timestamps": 0.5}, PACKED),
    "packed + single 0.2": ({"by": BY, "timestamps": 0.0, "single": 0.2}, PACKED),
    "packed + timestamps 0.5 + single 0.2": ({"by": BY, "timestamps": 0.5, "single": 0.2}, PACKED),
    "packed by session + timestamps 0.5": ({"by": "session", "timestamps": 0.5}, PACKED),
}
BASE = "whisper-base (no fine-tune)"
TIMESTAMP_TOKENS = 224  # a packed val window's label is under 160 tokens


@click.command()
@click.option("--params", "params_file", default="params.yaml", show_default=True, help="discover, text, model.")
@click.option("--work", default="checkpoints/packing", show_default=True, help="Features, runs and results.")
@click.option("--only", multiple=True, type=click.Choice(list(RECIPES)), help="Run these recipes only.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="A quick check of the script itself.")
@click.option("--tables-only", is_flag=True, help="Print the window fill and the presets' calculated gain, then stop.")
def main(params_file, work, only, max_steps, tables_only):
    click.echo(fill_table())
    click.echo(gain_table())
    if tables_only:
        return
    sections = ("discover", "text", "model", "benchmark", "preprocess")
    found, policy, model, benchmark, prep = config.load(params_file, *sections)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    splits, _ = discover(found, policy)
    click.echo(", ".join(f"{name} {len(rows)}" for name, rows in splits.items()) + " utterances")
    base_prep = prep.model_copy(update={"speed_perturb": [], "noise": config.Noise()})

    runs, models = {}, {}
    for name in only or RECIPES:
        pack, changes = RECIPES[name]
        settings = base_prep.model_copy(update={"pack": config.Pack(**pack)})
        features_dir = work / "features" / slug(json.dumps(pack, sort_keys=True))
        prep_s = prepare(splits, model, settings, features_dir)
        values = {**COMMON, **changes, **({"max_steps": max_steps} if max_steps else {})}
        done, paths = train(name, values, [values, pack], work, features_dir, model)
        runs[name] = {**done, "preprocess_s": prep_s}
        models[name] = paths.model

    results, scoring = decode_test({BASE: model.base, **models}, splits["test"], model, benchmark)

    click.echo("\n== timestamps on packed val windows")
    windows = packed_val(splits["val"], model, base_prep, work / "features" / "val-packed")
    timing = {alias: timestamp_scores(path, windows, model) for alias, path in {BASE: model.base, **models}.items()}

    rows = table(results, runs, timing, splits["test"], scoring)
    text = markdown(rows, len(windows), sum(len(w["spans"]) for w in windows))
    click.echo("\n" + text)
    (work / "packing.json").write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    (work / "packing.md").write_text(text)


def fill_table(n: int = 20_000, seed: int = 0) -> str:
    """How full windows are on a large corpus: utterances of telephone-like durations (gamma, mean
    4.6 s, as AI Hub's telephone set) in calls of 40, packed by session and by category with one
    open window or packing.OPEN_WINDOWS (first fit)."""
    rng = np.random.default_rng(seed)
    durations = np.clip(rng.gamma(4.0, 4.6 / 4.0, n), 0.5, 29.0)
    rows = [
        {"id": f"u{i:06d}", "duration": float(d), "category": "c", "session": f"s{i // 40}"}
        for i, d in enumerate(durations)
    ]
    lines = ["| packing | utterances per window | window filled (of 30 s) |", "|---|---|---|"]
    for name, by, open_windows in (
        ("by session (one open window: order kept)", "session", 1),
        ("by category, one open window", "category", 1),
        (f"by category, first fit over {packing.OPEN_WINDOWS} open windows", "category", packing.OPEN_WINDOWS),
    ):
        found = packing.windows(rows, config.Pack(by=by), seed, open_windows=open_windows)
        fill = sum(w.duration for w in found) / (30.0 * len(found))
        lines.append(f"| {name} | {n / len(found):.2f} | {100 * fill:.1f}% |")
    return "\n".join(lines) + f"\n\n{n} utterances of telephone-like durations (mean 4.6 s), calls of 40.\n"


def gain_table() -> str:
    """Utterances per second packed against single clips, calculated from training FLOPs, for
    telephone speech (shapes.TELEPHONE_*: labels of single clips and of packed windows)."""
    tokens, utterances = (
        (shapes.TELEPHONE_SINGLE_TOKENS, shapes.TELEPHONE_PACKED_TOKENS),
        shapes.TELEPHONE_PACKED_UTTERANCES,
    )
    lines = [
        "| model | training TFLOPs: single clip | packed window | utterances/s, packed ÷ single |",
        "|---|---|---|---|",
    ]
    for shape in ("base", "small", "large-v3", "large-v3-turbo"):
        single, packed = (shapes.training_flops(shape, n) for n in tokens)
        lines.append(f"| {shape} | {single / 1e12:.2f} | {packed / 1e12:.2f} | {utterances * single / packed:.2f}× |")
    return "\n".join(lines) + (
        f"\n\nTelephone speech (4.6 s, about 18 label tokens an utterance): a single clip's label {tokens[0]} "
        f"tokens, a packed window {utterances} utterances and {tokens[1]} tokens.\n"
    )


def packed_val(rows, model, settings: config.Preprocess, out: Path) -> list[dict]:
    """Val utterances packed by category, every window timestamped: its features and true segments."""
    pack = config.Pack(by="category", timestamps=1.0)
    preprocess_split(rows, out, model, settings.model_copy(update={"pack": pack}), augment=True)
    data = shards.open(out)
    tokenizer = labels.load_tokenizer(model.base, model.language, model.task)
    first = labels.timestamp_id(tokenizer, 0.0)
    return [
        {
            "features": record["input_features"],
            "spans": timestamps.segments(record["labels"], first, tokenizer.eos_token_id),
        }
        for record in (data[i] for i in range(len(data)))
        if record["utterances"] > 1
    ]


def timestamp_scores(path: str, windows: list[dict], model: config.Model) -> dict:
    """Median boundary error (s) of `generate(return_timestamps=True)` on the windows, and the share
    of windows given any timestamp."""
    net, _ = runtime.load_whisper(
        path, weights=torch.float32, compute_dtype=torch.float32, attention=model.attention, cuda=False, log=click.echo
    )
    net.eval()
    tokenizer = labels.load_tokenizer(path if Path(path, "tokenizer_config.json").is_file() else model.base)
    first = labels.timestamp_id(tokenizer, 0.0)
    batch = torch.from_numpy(np.stack([features.pad(w["features"].astype(np.float32)) for w in windows]))
    with torch.inference_mode():
        out = net.generate(
            batch,
            language=model.language,
            task=model.task,
            return_timestamps=True,
            max_length=TIMESTAMP_TOKENS,  # Whisper's generate counts it after the prompt
            attention_mask=torch.ones(batch.shape[0], batch.shape[-1], dtype=torch.long),
        )
    sequences = out if isinstance(out, torch.Tensor) else out["sequences"]
    errors, stamped, predicted = [], 0, 0
    for window, ids in zip(windows, sequences.tolist(), strict=True):
        found = timestamps.segments(ids, first, tokenizer.eos_token_id)
        stamped += bool(found)
        predicted += len(found)
        errors += timestamps.boundary_errors(window["spans"], found)
    return {
        "median_boundary_error_s": round(statistics.median(errors), 3) if errors else None,
        "windows_with_timestamps": stamped / len(windows),
        # nearest-boundary distances flatter a decode that cuts many segments: how many it cut, per true one
        "segments_per_utterance": round(predicted / sum(len(w["spans"]) for w in windows), 2),
    }


def table(results, runs, timing, test_rows, scoring) -> list[dict]:
    unseen = [i for i, row in enumerate(test_rows) if row.get("sentence") == "unseen"]
    single_rate = (runs.get(SINGLE) or {}).get("summary", {}).get("speed", {}).get("step_utterances_per_s")
    rows = []
    for name, result in results.items():
        scores = result.metrics["by_sentence"]["unseen"]
        row = {
            "recipe": name,
            "unseen_cer_nospace": scores["cer_nospace"],
            "unseen_ci": [scores.get("cer_nospace_ci_low"), scores.get("cer_nospace_ci_high")],
            "n_unseen": len(unseen),
            **timing[name],
        }
        if name in runs:
            summary = runs[name]["summary"]
            speed = summary["speed"]
            row |= {
                "utterances_per_s": speed["step_utterances_per_s"],
                "ratio": round(speed["step_utterances_per_s"] / single_rate, 2) if single_rate else None,
                "train_s": round(runs[name]["train_s"], 1),
                "features_s": round(runs[name]["preprocess_s"], 1),
                "steps": summary["global_steps"],
                "epochs": summary["epochs"],
                "records": summary["train_records"],
                "utterances": summary["train_utterances"],
                "val_cer_nospace": summary["best_val_cer_nospace"],
            }
            if name != SINGLE and SINGLE in results:
                change = comparison.compare(comparison.restrict(results, unseen), SINGLE, name, scoring).cer_nospace
                row["change_unseen"] = [change.change, change.ci_low, change.ci_high]
        rows.append(row)
    return rows


def markdown(rows: list[dict], n_windows: int, n_segments: int) -> str:
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}"
    lines = [
        "| recipe | training windows (utterances) × epochs | utterances/s in training steps | × single clips | "
        "wall time: train + features | unseen sentences: no-space CER (95% CI) | change vs single clips "
        "(95% paired CI) | median boundary error | segments per true one | windows with timestamps |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        change = r.get("change_unseen")
        vs = f"{100 * change[0]:+.1f} ({100 * change[1]:+.1f} to {100 * change[2]:+.1f})" if change else "–"
        error = "–" if r["median_boundary_error_s"] is None else f"{r['median_boundary_error_s']:.2f} s"
        if "steps" in r:
            data = f"{r['records']} ({r['utterances']}) × {r['epochs']:g}"
            speed = f"{r['utterances_per_s']:.2f}"
            ratio = f"{r['ratio']:.2f}×" if r["ratio"] else "–"
            wall = f"{r['train_s'] / 60:.1f} + {r['features_s'] / 60:.1f} min"
        else:
            data = speed = ratio = wall = "–"
        cer = f"{pct(r['unseen_cer_nospace'])} ({pct(r['unseen_ci'][0])}–{pct(r['unseen_ci'][1])})"
        stamped = f"{r['segments_per_utterance']:.2f} | {pct(r['windows_with_timestamps'])}%"
        lines.append(f"| {r['recipe']} | {data} | {speed} | {ratio} | {wall} | {cer} | {vs} | {error} | {stamped} |")
    n = rows[0]["n_unseen"] if rows else 0
    return (
        "\n".join(lines)
        + f"\n\nNo-space CER in %, on the test split's {n} utterances of unseen sentences. Timestamps: "
        f"{n_windows} packed val windows ({n_segments} utterances), each true start and end against the nearest "
        "predicted boundary.\n"
    )


if __name__ == "__main__":
    main()
