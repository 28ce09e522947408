"""What the benchmark writes for people: its report as Markdown, its speed report, its DVC plot rows
and the quick single-model summary (discover's report is `discover_report`'s). No stage logic
lives here. The quality reports hold nothing that varies from run to run, so that a rerun on the
same inputs leaves them byte for byte as they were; timings go to the speed report."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from whisper_ko.config import CER_FIGURE, CURVES_FIGURE, LONG_FORM_FIGURE
from whisper_ko.formatting import hours_minutes

if TYPE_CHECKING:  # annotations only: formatting a report imports no model code
    from whisper_ko.comparison import Comparison
    from whisper_ko.config import Benchmark
    from whisper_ko.evaluation import Guards, Run
    from whisper_ko.scoring import Result

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
# Whole calls (benchmark.long_form): per category beside no-space CER.
CALL_METRICS = {
    "share_loops": "Calls with a repetition loop (%)",
    "share_capped": "Calls with a 30-s window stopped by the token cap (%)",
    "insertion_rate": "Insertions per reference character, no-space (%)",
    "share_monotonic": "Calls whose segments are in order (%)",
    "share_within": "Calls whose segments lie inside the call (%)",
    "speech_covered": "Speech covered by a segment (%)",
}
CALLS = (
    "Each test session is a call: its utterances in order with a seeded silence of {gap} s between "
    "them; its reference, their normalised texts joined. *sequential*: 30-s windows moved along by the "
    "timestamps the model predicts (transformers' long-form `generate`, faster-whisper's `transcribe`), "
    "with the loop guards; *vad*: faster-whisper's `BatchedInferencePipeline` over the chunks of its "
    "bundled Silero VAD. A fine-tune that lost its timestamps shows here: windows that stop at the token "
    "cap, segments out of order or outside the call, speech no segment covers."
)
CONVENTIONS = "\n".join(
    (
        "- **CER (ours)**: corpus-level, the sum of character edits over the sum of reference characters, "
        "spaces included, after the project's one normaliser. Every other table uses it or its no-space form.",
        "- **No-space CER**: the same with spaces and punctuation removed (Korean spacing is inconsistent).",
        "- **OpenKoASR mean**: the mean of per-utterance CER, utterances above 100% dropped first, as the "
        "OpenKoASR leaderboard averages. Short utterances weigh as much as long ones and the dropped ones are "
        "usually loops, so it reads lower than ours on a looping model: compare it with that leaderboard only.",
        "- **sWER**: space-normalised WER (ETRI's, used for KsponSpeech in ESPnet): where hypothesis and "
        "reference differ only by spacing, the hypothesis takes the reference's spacing; then words are scored.",
    )
)
SHOWN = 10  # random and worst predictions per model
CELL_CHARS = 200  # a looping hypothesis runs to max_new_tokens; its start shows the loop
OVER_100 = (
    "CER is edits over reference characters, and a model that hallucinates or repeats itself "
    "inserts characters the audio never had: CER above 100% means more edits than characters, "
    "not a broken score."
)

NO_BASELINE = (
    "No model in benchmark.models is model.base itself: add it (e.g. `zero-shot: <model.base>`) to measure "
    "what fine-tuning changed."
)


def markdown(found: Run, settings: Benchmark, curves: bool, speed: str) -> str:
    """The whole report: the answer (per category and per group, each export against its source, the
    fine-tune against zero-shot, the figures), whole calls, the loop guards on and off, the Korean
    scoring conventions, per-group tables of every metric, an overall table, then predictions beside
    references for each model. `curves`: link the training curves' figure; `speed`: where the speed
    report is."""
    results, comparisons, seed = found.results, found.comparisons, settings.seed
    any_result = next(iter(results.values()))
    overall = any_result.metrics["overall"]
    total = overall["n"] + overall["empty_references"] + overall["failed"]
    # The answer first, ending on its sentence (`make demo` prints this section up to the figures).
    parts = [
        f"# Benchmark on the test split: {total} utterances, {hours_minutes(overall['hours'])} h:mm scored\n",
        "## Did fine-tuning help?\n",
        group_tables(results),
        f"{verdict(comparisons)}\n",
        f"![{METRICS['cer_nospace']} per category and model]({CER_FIGURE})\n",
    ]
    if curves:
        parts.append(f"![Training loss and validation CER]({CURVES_FIGURE})\n")
    parts.append(f"{OVER_100} Speed: `{speed}/benchmark.md` (not in git: it varies from run to run).\n")
    if found.calls:
        parts.append(calls_section(found.calls, settings))
    if found.guards:
        parts.append(guards_section(found.guards, settings))
    parts.append(f"## Korean scoring conventions\n\n{conventions_table(results)}\n{CONVENTIONS}\n")
    for breakdown in (key for key in any_result.metrics if key.startswith("by_")):
        parts.append(f"## By {breakdown[3:]}\n")
        for metric, label in METRICS.items():
            if metric in overall:
                parts.append(f"### {label}\n\n{group_table(results, breakdown, metric)}")
    parts.append(f"## Overall\n\n{overall_table(results)}")
    for alias, result in results.items():
        parts.append(f"## {alias}: {SHOWN} random predictions\n\n{predictions_table(sample(result, seed))}")
        parts.append(f"## {alias}: {SHOWN} worst utterances\n\n{predictions_table(worst(result))}")
    return "\n".join(parts)


def verdict(comparisons: Sequence[Comparison]) -> str:
    """What each export changed against its source, then whether fine-tuning helped: the report's
    answer and the end of the stage's output."""
    return "\n\n".join([*(parity(c) for c in comparisons if c.kind == "source"), conclusion(comparisons)])


def conclusion(comparisons: Sequence[Comparison]) -> str:
    """The answer to the project's question: the fine-tune against the base, or why there is none."""
    return next((answer(c) for c in comparisons if c.kind == "base"), NO_BASELINE)


def answer(c: Comparison) -> str:
    """One sentence: did fine-tuning help, by how much, how sure."""
    ns = c.cer_nospace
    if ns.change:
        verb = "lowered" if ns.change < 0 else "raised"
        change = f"{verb} no-space CER from {_pct(ns.before)}% ({c.baseline}) to {_pct(ns.after)}% ({c.candidate})"
    else:
        change = f"left no-space CER at {_pct(ns.after)}% ({c.baseline} and {c.candidate} alike)"
    sentence = f"Fine-tuning {change} on {c.n} test utterances"
    if ns.ci_low is None:
        return sentence + "."
    return f"{sentence} ({_interval(ns)}, paired {ns.interval} over utterances){_chance(ns)}."


def parity(c: Comparison) -> str:
    """One sentence: what exporting changed, against the model it was exported from."""
    changes = "; ".join(
        f"{label} {_pct(change.before)}% → {_pct(change.after)}%"
        + (f" ({_interval(change)}{_chance(change)})" if change.ci_low is not None else "")
        for label, change in (("no-space CER", c.cer_nospace), ("CER", c.cer))
    )
    return (
        f"{c.candidate}, exported from {c.baseline} and decoded by faster-whisper: {changes}; "
        f"{100 * c.changed:.1f}% of the {c.n} transcripts differ."
    )


def _interval(change) -> str:
    return f"{100 * change.change:+.2f} points, 95% interval {100 * change.ci_low:+.2f} to {100 * change.ci_high:+.2f}"


def _chance(change) -> str:
    return ": within chance, the interval includes zero" if change.ci_low <= 0 <= change.ci_high else ""


def flat_calls(calls: dict[str, dict[str, Result]]) -> dict[str, Result]:
    """The whole calls' results under one name each: `<alias> · <method>`."""
    return {f"{alias} · {method}": r for alias, methods in calls.items() for method, r in methods.items()}


def calls_section(calls: dict[str, dict[str, Result]], settings: Benchmark) -> str:
    flat = flat_calls(calls)
    durations = [p["duration"] for p in next(iter(flat.values())).predictions]
    low, high = settings.long_form.gap_s
    lines = [
        f"## Whole calls: {len(durations)} test sessions, {hours_minutes(sum(durations) / 3600)} h:mm, "
        f"{sum(d > 30 for d in durations)} longer than 30 s\n",
        CALLS.format(gap=f"{low:g}–{high:g}") + "\n",
        f"{METRICS['cer_nospace']} by category:\n\n{group_table(flat, 'by_category', 'cer_nospace')}",
        f"![Whole calls: {METRICS['cer_nospace']} per category]({LONG_FORM_FIGURE})\n",
        calls_table(flat),
    ]
    for metric, label in CALL_METRICS.items():
        lines.append(f"### {label}, by category\n\n{group_table(flat, 'by_category', metric)}")
    return "\n".join(lines)


def calls_table(flat: dict[str, Result]) -> str:
    """Loops and timestamp health over all calls, per model and decoding method."""
    header = [
        "Model · decoding",
        "calls",
        "no-space CER %",
        "95% CI",
        "looping %",
        "token cap hit %",
        "in order %",
        "inside the call %",
        "speech covered %",
        "segments per utterance",
        "segments decoded again %",
    ]
    rows = []
    for key, r in flat.items():
        m = r.metrics["overall"]
        cells = [m["n"], _pct(m["cer_nospace"]), _ci(m), _pct(m.get("share_loops")), _pct(m.get("share_capped"))]
        cells += [_pct(m.get(k)) for k in ("share_monotonic", "share_within", "speech_covered")]
        cells += [m.get("segments_per_utterance", "–"), _pct(m.get("share_fallback_segments"))]
        rows.append([key, *cells])
    note = (
        "Segments decoded again: at a fallback temperature, where the engine says (faster-whisper does; "
        "transformers does not: –)."
    )
    return _table(header, rows) + f"\n{note}\n"


def guards_metrics(guards: Guards) -> dict:
    """The loop guards on and off, for metrics/benchmark.json."""
    keys = ("cer", "cer_nospace", "share_loops", "insertion_rate", "share_cer_over_100")
    return {
        "on": {k: guards.on.metrics["overall"][k] for k in keys},
        "off": {k: guards.off.metrics["overall"][k] for k in keys},
        **guards.change.metrics(),
    }


def guards_section(guards: dict[str, Guards], settings: Benchmark) -> str:
    f = settings.fallback
    header = [
        "Model",
        "no-space CER % off",
        "on",
        "change, points (95% CI)",
        "looping % off",
        "on",
        "CER > 100% off",
        "on",
        "insertions % off",
        "on",
        "transcripts changed %",
    ]
    rows = []
    for alias, g in guards.items():
        on, off, ns = g.on.metrics["overall"], g.off.metrics["overall"], g.change.cer_nospace
        change = f"{100 * ns.change:+.2f}" + (
            f" ({100 * ns.ci_low:+.2f} to {100 * ns.ci_high:+.2f})" if ns.ci_low is not None else ""
        )
        cells = [_pct(off["cer_nospace"]), _pct(on["cer_nospace"]), change]
        for k in ("share_loops", "share_cer_over_100", "insertion_rate"):
            cells += [_pct(off[k]), _pct(on[k])]
        rows.append([alias, *cells, _pct(g.change.changed)])
    temperatures = ", ".join(f"{t:g}" for t in f.temperatures)
    return (
        f"## Loop guards on the test utterances: on and off\n\n"
        f"openai/whisper's guards: an output whose text compresses better than {f.compression_ratio_threshold:g} "
        f"(transformers measures it on token ids: {f.token_compression_ratio_threshold:g}) or whose mean token "
        f"log-probability is below {f.logprob_threshold:g} is decoded again at the next temperature of "
        f"{temperatures}. transformers applies them in `generate`; faster-whisper in `transcribe`, one clip at a "
        f"time (its batched pipeline decodes at the first temperature only). The rest of this report decodes "
        f"utterances with them {'on' if f.apply else 'off'} (`benchmark.fallback.apply`); speed of both: the "
        f"speed report.\n\n" + _table(header, rows)
    )


def conventions_table(results: dict[str, Result]) -> str:
    header = ["Model", "CER (ours) %", "no-space CER %", "OpenKoASR mean CER %", "dropped > 100%", "WER %", "sWER %"]
    rows = []
    for alias, r in results.items():
        m = r.metrics["overall"]
        cells = [_pct(m["cer"]), _pct(m["cer_nospace"]), _pct(m.get("openkoasr_cer")), m.get("openkoasr_dropped")]
        rows.append([alias, *cells, _pct(m["wer"]), _pct(m.get("swer"))])
    return _table(header, rows)


def all_results(found: Run) -> dict[str, Result]:
    """Every decoding the run timed, under one name each."""
    out = dict(found.results)
    for alias, g in found.guards.items():
        name, other = g.switched
        out[f"{alias} · {name}"] = other
    return out | {f"{key} (calls)": r for key, r in flat_calls(found.calls).items()}


def speed_rows(found: Run) -> dict[str, dict]:
    return {key: r.speed for key, r in all_results(found).items()}


def speed_markdown(found: Run) -> str:
    """The speed report: per model (and decoding) and per worker, as the Open ASR Leaderboard measures it."""
    results = all_results(found)
    header = ["Model", "samples/s", "RTFx node", "RTFx per device", "worker peak RSS MB", "dtype", "attention", "batch"]
    rows = []
    for alias, r in results.items():
        s, t = r.speed, r.transcripts
        cells = [s["samples_per_s"], s["rtfx"], s["rtfx_per_device"], s["worker_peak_rss_mb"]]
        rows.append([alias, *cells, t.dtype, t.attention, t.batch_size])
    return (
        "# Benchmark speed\n\nWarm-up batches and model loading are not timed. RTFx node: all audio over the "
        "slowest worker's wall time; RTFx per device: audio over time spent decoding, as the Open ASR "
        f"Leaderboard reports it.\n\n{_table(header, rows)}\n## Per worker\n\n{workers_table(results)}"
    )


def group_table(results: dict[str, Result], breakdown: str = "by_category", metric: str = "cer") -> str:
    """One row per model, one column per group, then TOTAL ."""
    groups = sorted({g for r in results.values() for g in r.metrics[breakdown]})
    rows = []
    for alias, r in results.items():
        cells = [_format(metric, r.metrics[breakdown].get(g, {}).get(metric)) for g in groups]
        rows.append([alias, *cells, _format(metric, r.metrics["overall"].get(metric))])
    return _table(["Model", *groups, "TOTAL"], rows)


def group_tables(results: dict[str, Result], metric: str = "cer_nospace") -> str:
    """`metric` per model for each breakdown, category first: what the stage prints."""
    breakdowns = [key for key in next(iter(results.values())).metrics if key.startswith("by_")]
    return "\n".join(f"{METRICS[metric]} by {b[3:]}:\n\n{group_table(results, b, metric)}" for b in breakdowns)


def overall_table(results: dict[str, Result]) -> str:
    header = ["Model", "n", "hours", "failed", "empty refs", "CER %", "CER no-space %", "95% CI", "WER %", "dtype"]
    rows = []
    for alias, r in results.items():
        m = r.metrics["overall"]
        cells = [m["n"], m["hours"], m["failed"], m["empty_references"], _pct(m["cer"]), _pct(m["cer_nospace"])]
        rows.append([alias, *cells, _ci(m), _pct(m["wer"]), r.transcripts.dtype])
    return _table(header, rows)


def workers_table(results: dict[str, Result]) -> str:
    """Each worker's share: RTFx per device is its audio over its decoding time, warm-up excluded."""
    header = ["Model", "device", "audio s", "decoding s", "wall s", "RTFx"]
    rows = []
    for alias, r in results.items():
        for t in r.transcripts.timings:
            rtfx = round(t.audio_s / t.decode_s, 2) if t.decode_s else "–"
            rows.append([alias, t.device, round(t.audio_s, 1), round(t.decode_s, 2), round(t.wall_s, 2), rtfx])
    return _table(header, rows)


def sample(result: Result, seed: int = 0, k: int = SHOWN) -> list[dict]:
    """`k` random predictions with a hypothesis (seeded: the same utterances for every model)."""
    scored = [p for p in result.predictions if p["hypothesis"] is not None]
    return random.Random(seed).sample(scored, min(k, len(scored)))


def worst(result: Result, k: int = SHOWN) -> list[dict]:
    """The `k` utterances with the highest no-space CER, longest hypothesis first among equals."""
    scored = [p for p in result.predictions if p.get("cer_nospace") is not None]
    return sorted(scored, key=lambda p: (-p["cer_nospace"], -len(p["hypothesis"])))[:k]


def predictions_table(predictions: list[dict]) -> str:
    rows = [
        [p["id"], p["category"], _pct(p["cer_nospace"]), _clip(p["reference"]), _clip(p["hypothesis"])]
        for p in predictions
    ]
    return _table(["id", "category", "CER no-space %", "reference", "hypothesis"], rows)


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
    m, v = result.metrics["overall"], result.speed
    lines = [
        f"CER {_pct(m['cer'])}%  CER no-space {_pct(m['cer_nospace'])}% (95% CI {_ci(m)})  WER {_pct(m['wer'])}%",
        f"samples {m['n']} (failed {m['failed']}, empty references {m['empty_references']})  "
        f"wall {v['wall_s']} s  {v['samples_per_s']} samples/s  RTFx {v['rtfx']} (per device {v['rtfx_per_device']})",
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


def _ci(m: dict) -> str:
    """A metrics entry's 95% interval of no-space CER, in percent."""
    return f"{_pct(m.get('cer_nospace_ci_low'))}–{_pct(m.get('cer_nospace_ci_high'))}"


def _table(header: list, rows: list[list]) -> str:
    """A Markdown table: the header, its rule, a line per row."""
    return "\n".join([_row(header), _row(["---"] * len(header)), *map(_row, rows)]) + "\n"


def _row(cells: list) -> str:
    # A `|` inside a transcript would split the Markdown cell.
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
