"""The benchmark stage's run: every model on the test utterances (with and without Whisper's loop
guards where asked) and on the test sessions as whole calls, decoded by the workers
(`scheduling`), scored (`scoring`) and compared (`comparison`)."""

from dataclasses import dataclass, field, replace
from functools import partial

from whisper_ko import checks, config, inference, long_form, metrics
from whisper_ko.comparison import Comparison, compare, comparisons
from whisper_ko.scheduling import Options, transcribe
from whisper_ko.scoring import Result, Scoring, score, score_calls, speed, utterance_counts


@dataclass
class Run:
    """Everything the benchmark stage measured."""

    results: dict[str, Result]  # per model, on the test utterances (loop guards as benchmark.fallback.apply says)
    comparisons: list[Comparison]  # the fine-tune against its base, each export against its source
    guards: dict[str, "Guards"] = field(default_factory=dict)  # per model: with the loop guards and without
    # per model and decoding method ("sequential", "vad"): the test sessions as whole calls
    calls: dict[str, dict[str, Result]] = field(default_factory=dict)


@dataclass(frozen=True)
class Guards:
    """One model on the test utterances with Whisper's loop guards and without them."""

    on: Result
    off: Result
    change: Comparison  # with against without, paired over the utterances
    applied: bool  # the run's own results are `on` (benchmark.fallback.apply)

    @property
    def switched(self) -> tuple[str, Result]:
        """The decoding the rest of the run does not use: its name and its results."""
        return other_way(self.applied), self.off if self.applied else self.on


GUARDED, UNGUARDED = "with loop guards", "without loop guards"


def benchmark(settings: config.Benchmark, model: config.Model, rows: list[dict], models: dict[str, str]) -> Run:
    """The benchmark stage's run: `models` on `rows` as the params say (the utterances, with and
    without the loop guards where asked, then the sessions as whole calls), and their comparisons."""
    options = Options.of(settings, model)
    scoring = Scoring.of(settings, rows)
    # the test utterances as the params say (`chosen`: with the loop guards or without), and the other way
    chosen = options.decoding
    other = replace(chosen, guards=None if settings.fallback.apply else settings.fallback)
    plain = replace(chosen, guards=None)
    jobs = {}
    for alias, path in models.items():  # a model's two decodings in a row: the worker loads it once
        jobs[alias] = (path, chosen)
        if settings.fallback.compare:
            jobs[other_alias(alias, settings.fallback.apply)] = (path, other)
    found = run(jobs, rows, options, scoring)
    results = {alias: found[alias] for alias in models}
    guards = {}
    if settings.fallback.compare:
        for alias in models:
            other = found[other_alias(alias, settings.fallback.apply)]
            on, off = (found[alias], other) if settings.fallback.apply else (other, found[alias])
            change = compare({GUARDED: on, UNGUARDED: off}, UNGUARDED, GUARDED, scoring, "guards")
            guards[alias] = Guards(on, off, change, settings.fallback.apply)
    calls = {}
    if settings.long_form.apply:
        calls = long_form_run(settings, plain, rows, models, options, scoring)
    return Run(results, comparisons(results, models, model.base, scoring), guards, calls)


def other_way(applied: bool) -> str:
    """What decoding the other way is: the guards off where the run applies them."""
    return f"loop guards {'off' if applied else 'on'}"


def other_alias(alias: str, applied: bool) -> str:
    return f"{alias} · {other_way(applied)}"


def long_form_run(
    settings: config.Benchmark,
    decoding: inference.Decoding,
    rows: list[dict],
    models: dict[str, str],
    options: Options,
    scoring: Scoring,
) -> dict[str, dict[str, Result]]:
    """The test sessions as whole calls, decoded by every model the ways it is deployed: sequential
    windows (transformers' long-form generate, faster-whisper's transcribe), and faster-whisper's
    VAD chunks for CTranslate2 models; always with the loop guards."""
    calls = long_form.calls(rows, settings.long_form.gap_s, settings.seed)
    decoding = replace(
        decoding,
        guards=settings.fallback,
        max_new_tokens=settings.long_form.max_new_tokens,
        condition_on_prev_tokens=settings.long_form.condition_on_prev_tokens,
        vad_batch_size=settings.long_form.vad_batch_size,
    )
    jobs, named = {}, {}
    for alias, path in models.items():
        for method in ("sequential", "vad") if checks.is_ctranslate2(path) else ("sequential",):
            key = f"{alias} · {method}"
            jobs[key], named[key] = (path, replace(decoding, method=method)), (alias, method)
    out: dict[str, dict[str, Result]] = {}
    for key, transcripts in transcribe(jobs, calls, options, long_form.score).items():
        alias, method = named[key]
        table, predictions, scored = score_calls(calls, transcripts, scoring)
        out.setdefault(alias, {})[method] = Result(table, predictions, transcripts, speed(calls, transcripts), scored)
    return out


def run(models: dict[str, str | tuple], rows: list[dict], options: Options, scoring: Scoring) -> dict[str, Result]:
    """Transcribe `rows` with every model and score them, per group of each `scoring.group_by` field."""
    if scoring.kocer:
        metrics.kocer_module()
    results = {}
    scorer = partial(utterance_counts, kocer=scoring.kocer)
    for alias, found in transcribe(models, rows, options, scorer).items():
        table, predictions, scored = score(rows, found, scoring)
        results[alias] = Result(table, predictions, found, speed(rows, found), scored)
    return results
