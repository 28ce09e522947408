"""What the stages write for people: discover's and the benchmark's reports as Markdown, the
benchmark's DVC plot rows and the quick single-model summary. No stage logic lives here."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: discover's report needs none of the benchmark's imports
    from whisper_ko.evaluation import Result

# Metrics tabulated per group, in this order: label, and how a value is written.
METRICS = {
    "cer": "CER (%)",
    "cer_nospace": "CER without spaces and punctuation (%)",
    "wer": "WER (%)",
    "kocer": "kocer, reading-equivalence CER on the raw label (%)",
    "insertion_rate": "Insertions per reference character, no-space (%)",
    "share_cer_over_100": "Utterances with CER > 100% (%)",
    "share_loops": "Utterances with a repetition loop (%)",
    "share_empty_output": "Utterances with an empty output (%)",
    "n": "Utterances scored",
}
SHOWN = 10  # random and worst predictions per model
CELL_CHARS = 200  # a looping hypothesis runs to max_new_tokens; its start shows the loop


def discover_markdown(report: dict) -> str:
    """reports/discover.md: found = kept + skipped, per split and category, skips with an example."""
    categories = sorted({c for per in report["kept"].values() for c in per})
    lines = [
        f"# discover ({report['layout']}): {report['found']} found = "
        f"{report['kept_total']} kept + {report['skipped_total']} skipped",
        "",
        f"Corpus: `{report['root']}`",
        "",
        "| split | " + " | ".join(categories) + " | total | sessions | hours |",
        "|---" * (len(categories) + 4) + "|",
    ]
    for split, per in report["kept"].items():
        cells = " | ".join(str(per.get(c, 0)) for c in categories)
        lines.append(
            f"| {split} | {cells} | {sum(per.values())} | {report['sessions'][split]} | {report['hours'][split]} |"
        )
    if not report["kept"]["test"]:
        lines += ["", "**No test split**: the corpus has no evaluation side; set `discover.test_fraction`."]
    lines += ["", "| skipped because | count | example |", "|---|---|---|"]
    for reason, entry in report["skipped"].items():
        lines.append(f"| {reason} | {entry['count']} | `{entry['examples'][0] if entry['examples'] else ''}` |")
    lines += ["", "| kept input | values |", "|---|---|"]
    for name, counts in report["kept_input"].items():
        lines.append(f"| {name} | " + ", ".join(f"{k}: {v}" for k, v in counts.items()) + " |")
    return "\n".join(lines) + "\n"


def markdown(results: dict[str, Result], seed: int = 0) -> str:
    """The whole report: per-group tables (the Model × category × TOTAL table first), an
    overall table with speed, then predictions beside references for each model."""
    any_result = next(iter(results.values()))
    overall = any_result.metrics["overall"]
    total = overall["n"] + overall["empty_references"] + overall["failed"]
    parts = [f"# Benchmark on the test split: {total} utterances, {overall['hours']:.2f} h scored\n"]
    for breakdown in (key for key in any_result.metrics if key.startswith("by_")):
        parts.append(f"## By {breakdown[3:]}\n")
        for metric, label in METRICS.items():
            if metric in overall:
                parts.append(f"### {label}\n\n{group_table(results, breakdown, metric)}")
    parts.append(f"## Overall\n\n{overall_table(results)}")
    parts.append(
        "## Speed per worker\n\nWarm-up batches and model loading are not timed. RTFx node: all audio over the "
        "slowest worker's wall time; RTFx per device: audio over time spent decoding, as the Open ASR "
        f"Leaderboard reports it.\n\n{workers_table(results)}"
    )
    for alias, result in results.items():
        parts.append(f"## {alias}: {SHOWN} random predictions\n\n{predictions_table(sample(result, seed))}")
        parts.append(f"## {alias}: {SHOWN} worst utterances\n\n{predictions_table(worst(result))}")
    return "\n".join(parts)


def group_table(results: dict[str, Result], breakdown: str = "by_category", metric: str = "cer") -> str:
    """One row per model, one column per group, then TOTAL ."""
    groups = sorted({g for r in results.values() for g in r.metrics[breakdown]})
    lines = [_row(["Model", *groups, "TOTAL"]), _row(["---"] * (len(groups) + 2))]
    for alias, r in results.items():
        cells = [_format(metric, r.metrics[breakdown].get(g, {}).get(metric)) for g in groups]
        lines.append(_row([alias, *cells, _format(metric, r.metrics["overall"].get(metric))]))
    return "\n".join(lines) + "\n"


def group_tables(results: dict[str, Result], metric: str = "cer_nospace") -> str:
    """`metric` per model for each breakdown, category first: what the stage prints."""
    breakdowns = [key for key in next(iter(results.values())).metrics if key.startswith("by_")]
    return "\n".join(f"{METRICS[metric]} by {b[3:]}:\n\n{group_table(results, b, metric)}" for b in breakdowns)


def overall_table(results: dict[str, Result]) -> str:
    header = [
        "Model",
        "n",
        "hours",
        "failed",
        "empty refs",
        "CER %",
        "CER no-space %",
        "95% CI",
        "WER %",
        "samples/s",
        "RTFx node",
        "RTFx per device",
        "worker peak RSS MB",
        "dtype",
        "attention",
        "batch",
    ]
    lines = [_row(header), _row(["---"] * len(header))]
    for alias, r in results.items():
        m, t = r.metrics["overall"], r.transcripts
        interval = f"{_pct(m.get('cer_nospace_ci_low'))}–{_pct(m.get('cer_nospace_ci_high'))}"
        lines.append(
            _row(
                [
                    alias,
                    m["n"],
                    m["hours"],
                    m["failed"],
                    m["empty_references"],
                    _pct(m["cer"]),
                    _pct(m["cer_nospace"]),
                    interval,
                    _pct(m["wer"]),
                    m["samples_per_s"],
                    m["rtfx"],
                    m["rtfx_per_device"],
                    round(t.peak_rss_mb),
                    t.dtype,
                    t.attention,
                    t.batch_size,
                ]
            )
        )
    return "\n".join(lines) + "\n"


def workers_table(results: dict[str, Result]) -> str:
    """Each worker's share: RTFx per device is its audio over its decoding time, warm-up excluded."""
    header = ["Model", "device", "audio s", "decoding s", "wall s", "RTFx"]
    lines = [_row(header), _row(["---"] * len(header))]
    for alias, r in results.items():
        for t in r.transcripts.timings:
            rtfx = round(t.audio_s / t.decode_s, 2) if t.decode_s else "–"
            lines.append(_row([alias, t.device, round(t.audio_s, 1), round(t.decode_s, 2), round(t.wall_s, 2), rtfx]))
    return "\n".join(lines) + "\n"


def sample(result: Result, seed: int = 0, k: int = SHOWN) -> list[dict]:
    """`k` random predictions with a hypothesis (seeded: the same utterances for every model)."""
    scored = [p for p in result.predictions if p["hypothesis"] is not None]
    return random.Random(seed).sample(scored, min(k, len(scored)))


def worst(result: Result, k: int = SHOWN) -> list[dict]:
    """The `k` utterances with the highest no-space CER, longest hypothesis first among equals."""
    scored = [p for p in result.predictions if p.get("cer_nospace") is not None]
    return sorted(scored, key=lambda p: (-p["cer_nospace"], -len(p["hypothesis"])))[:k]


def predictions_table(predictions: list[dict]) -> str:
    lines = [_row(["id", "category", "CER no-space %", "reference", "hypothesis"]), _row(["---"] * 5)]
    for p in predictions:
        cells = [p["id"], p["category"], _pct(p["cer_nospace"]), _clip(p["reference"]), _clip(p["hypothesis"])]
        lines.append(_row(cells))
    return "\n".join(lines) + "\n"


def plot_rows(results: dict[str, Result]) -> list[dict]:
    """Rows for `dvc plots`: no-space CER per category per model, TOTAL included. `label` sorts
    the bars by category, then model, because DVC's bar templates colour by revision only."""
    rows = []
    for alias, r in results.items():
        groups = {**r.metrics["by_category"], "TOTAL": r.metrics["overall"]}
        for category, values in groups.items():
            rows.append(
                {
                    "label": f"{category} {alias}",
                    "model": alias,
                    "category": category,
                    "cer_nospace": values["cer_nospace"],
                }
            )
    return rows


def summary(result: Result, seed: int = 0) -> str:
    """The quick evaluation's printout: headline numbers, then references beside predictions."""
    m = result.metrics["overall"]
    lines = [
        f"CER {_pct(m['cer'])}%  CER no-space {_pct(m['cer_nospace'])}% "
        f"(95% CI {_pct(m.get('cer_nospace_ci_low'))}–{_pct(m.get('cer_nospace_ci_high'))})  WER {_pct(m['wer'])}%",
        f"samples {m['n']} (failed {m['failed']}, empty references {m['empty_references']})  "
        f"wall {m['wall_s']} s  {m['samples_per_s']} samples/s  RTFx {m['rtfx']} (per device {m['rtfx_per_device']})",
    ]
    for p in sample(result, seed):
        lines += ["", f"  {p['id']}  CER {_pct(p['cer'])}%", f"  REF: {p['reference']}", f"  HYP: {p['hypothesis']}"]
    return "\n".join(lines)


def _clip(text: str) -> str:
    return text if len(text) <= CELL_CHARS else text[:CELL_CHARS] + "…"


def _format(metric: str, value) -> str:
    return str(value) if metric == "n" and value is not None else _pct(value)


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _row(cells: list) -> str:
    # A `|` inside a transcript would split the Markdown cell.
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
