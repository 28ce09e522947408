"""Comparing models paired over the utterances both scored: the fine-tune against its base, an
export against its source, the loop guards on against off; each change with its paired interval."""

import os
from dataclasses import dataclass

import numpy as np

from whisper_ko import checks, config, metrics
from whisper_ko.errors import UserError
from whisper_ko.scheduling import Transcripts
from whisper_ko.scoring import Result, Scoring


@dataclass(frozen=True)
class Change:
    """One corpus-level rate of two models on the same utterances."""

    before: float  # the baseline's
    after: float
    change: float  # after - before: negative is better
    ci_low: float | None  # 95% paired interval of the change (None without resamples)
    ci_high: float | None
    interval: str | None = None  # how it was found: metrics.interval_method


@dataclass(frozen=True)
class Comparison:
    """A model against the one it came from (the fine-tune against its base, an export against its
    source), paired over the utterances both scored."""

    kind: str  # "base" or "source": what the baseline is to the candidate
    baseline: str  # alias
    candidate: str
    n: int
    cer: Change
    cer_nospace: Change
    changed: float  # share of these utterances whose transcript differs

    def metrics(self) -> dict:
        out = {}
        for name in ("cer", "cer_nospace"):
            change = getattr(self, name)
            out |= {
                f"{name}_change": change.change,
                f"{name}_change_ci_low": change.ci_low,
                f"{name}_change_ci_high": change.ci_high,
            }
        return {**out, "share_transcripts_changed": self.changed, "n": self.n}


def comparisons(results: dict[str, Result], models: dict[str, str], base: str, scoring: Scoring) -> list[Comparison]:
    """The fine-tune against the base model, where both were scored, and each CTranslate2 export
    against the model it was exported from, where that was scored."""
    found = []
    baseline = baseline_alias(models, base)
    if baseline and config.FINETUNED in results:
        found.append(compare(results, baseline, config.FINETUNED, scoring, "base"))
    for alias, path in models.items():
        source = checks.export_source(path)
        if source is None:
            continue
        # the fine-tune first: in a test or a quick look the base may be the very same directory
        others = sorted((a for a in models if a != alias), key=lambda a: a != config.FINETUNED)
        origin = next((a for a in others if same_path(models[a], source)), None)
        if origin:
            found.append(compare(results, origin, alias, scoring, "source"))
    return found


def same_path(a: str, b: str) -> bool:
    return a == b or (os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b))


def baseline_alias(models: dict[str, str], base: str) -> str | None:
    """The alias under which `models` scores the base model itself (zero-shot), if any."""
    return next((alias for alias, path in models.items() if alias != config.FINETUNED and same_path(path, base)), None)


def compare(
    results: dict[str, Result], baseline: str, candidate: str, scoring: Scoring, kind: str = "base"
) -> Comparison:
    """`candidate` against `baseline` on the utterances both scored: CER and no-space CER before and
    after, each change with its paired interval (the same utterances drawn for both), and
    the share of transcripts that differ."""
    pairs = [
        i
        for i, (b, c) in enumerate(zip(results[baseline].scored, results[candidate].scored, strict=True))
        if "error" not in b and "error" not in c and b["nospace_chars"] > 0
    ]
    if not pairs:
        raise UserError(f"no test utterance was scored for both {baseline!r} and {candidate!r}")

    def change(edits: str, chars: str) -> Change:
        counts = np.array(
            [[results[a].scored[i][edits] for a in (baseline, candidate)] for i in pairs], dtype=np.float64
        )
        lengths = np.array([results[baseline].scored[i][chars] for i in pairs], dtype=np.float64)
        before, after = counts.sum(axis=0) / max(lengths.sum(), 1.0)
        low = high = method = None
        if scoring.resamples:
            low, high = metrics.rate_interval(
                counts[:, 1] - counts[:, 0], lengths.tolist(), resamples=scoring.resamples, seed=scoring.seed
            )
            method = metrics.interval_method(len(pairs))
        return Change(round(before, 6), round(after, 6), round(after - before, 6), low, high, method)

    hypotheses = [results[a].transcripts.hypotheses for a in (baseline, candidate)]
    changed = sum(hypotheses[0][i] != hypotheses[1][i] for i in pairs) / len(pairs)
    return Comparison(
        kind,
        baseline,
        candidate,
        len(pairs),
        change("char_edits", "chars"),
        change("nospace_edits", "nospace_chars"),
        round(changed, 6),
    )


def restrict(results: dict[str, Result], indices: list[int]) -> dict[str, Result]:
    """The results on some utterances only (their transcripts and counts), for a paired comparison on those alone."""
    return {
        alias: Result(
            {},
            [],
            Transcripts([r.transcripts.hypotheses[i] for i in indices], {}),
            {},
            [r.scored[i] for i in indices],
        )
        for alias, r in results.items()
    }
