"""Score models on the test manifest, per category, and render the results."""

import time

import numpy as np

from whisper_ko import inference, metrics


def subset(rows: list[dict], max_samples: int | None, seed: int) -> list[dict]:
    """A seeded subset in manifest order (the same utterances for every model)."""
    if not max_samples or max_samples >= len(rows):
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), max_samples, replace=False))
    return [rows[i] for i in keep]


def score_model(model_path: str, rows: list[dict], *, device: str = "cpu", desc: str = "", **decode) -> dict:
    """Predictions and metrics of one model on `rows`."""
    model, processor = inference.load(model_path, device)
    start = time.perf_counter()
    hypotheses = inference.transcribe(model, processor, rows, desc=desc or model_path, **decode)
    wall = time.perf_counter() - start
    predictions, failed = [], 0
    for row, hyp in zip(rows, hypotheses):
        if hyp is None:
            failed += 1
            continue
        scores = metrics.utterance_scores(row["text"], hyp)
        predictions.append(
            {
                "id": row["id"],
                "category": row.get("category"),
                "reference": row["text"],
                "hypothesis": hyp,
                "cer": round(scores["char_edits"] / scores["chars"], 4) if scores["chars"] else None,
                "duration": row["duration"],
                **scores,
            }
        )
    overall = metrics.aggregate(predictions)
    audio_seconds = sum(r["duration"] for r in rows)
    overall.update(
        failed=failed, wall_s=round(wall, 2), samples_per_s=round(len(rows) / wall, 2), rtfx=round(audio_seconds / wall, 2)
    )
    return {
        "metrics": {"overall": overall, "by_category": metrics.by_group(predictions, "category")},
        "predictions": predictions,
    }


def markdown(results: dict[str, dict], metric: str = "cer") -> str:
    """The seed's table: one row per model, one column per category, then TOTAL."""
    categories = sorted({c for r in results.values() for c in r["by_category"]})
    lines = [
        f"| Model | {' | '.join(categories)} | TOTAL |",
        "|---" * (len(categories) + 2) + "|",
    ]
    for alias, r in results.items():
        cells = [_pct(r["by_category"].get(c, {}).get(metric)) for c in categories]
        lines.append(f"| {alias} | {' | '.join(cells)} | {_pct(r['overall'][metric])} |")
    return "\n".join(lines) + "\n"


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}"
