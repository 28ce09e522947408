import numpy as np
import pytest

from whisper_ko import metrics


def test_corpus_level_rates_sum_edits_over_reference_lengths():
    scored = [metrics.utterance_scores("가나다라", "가나다마"), metrics.utterance_scores("마바", "")]
    overall = metrics.aggregate(scored)
    # 1 substitution out of 4 chars, then 2 deletions out of 2: (1 + 2) / (4 + 2), not the mean 62.5%.
    assert overall["cer"] == pytest.approx(3 / 6)
    assert overall["n"] == 2


def test_spacing_only_difference_counts_raw_but_not_nospace():
    s = metrics.utterance_scores("안녕 하세요", "안녕하세요")
    overall = metrics.aggregate([s])
    assert overall["cer"] == pytest.approx(1 / 6, abs=1e-6)
    assert overall["cer_nospace"] == 0.0
    assert overall["wer"] == pytest.approx(2 / 2)


def test_punctuation_only_difference_is_free_in_nospace():
    overall = metrics.aggregate([metrics.utterance_scores("네, 맞아요.", "네 맞아요")])
    assert overall["cer_nospace"] == 0.0 and overall["cer"] > 0


def test_empty_references_are_excluded_and_counted():
    scored = [metrics.utterance_scores("", "헛소리"), metrics.utterance_scores("네", "네")]
    overall = metrics.aggregate(scored)
    assert overall == {**overall, "cer": 0.0, "n": 1, "empty_references": 1}


def test_hangul_is_scored_per_syllable_not_per_jamo():
    # 각 vs 갂 differ in one jamo; one syllable substitution, not a jamo-level edit.
    overall = metrics.aggregate([metrics.utterance_scores("각", "갂")])
    assert overall["cer"] == 1.0


def test_by_group_splits_per_category():
    scored = [
        {**metrics.utterance_scores("가", "가"), "category": "D01"},
        {**metrics.utterance_scores("나", "다"), "category": "D02"},
    ]
    groups = metrics.by_group(scored, "category")
    assert groups["D01"]["cer"] == 0.0 and groups["D02"]["cer"] == 1.0


def test_hangul_stays_syllables_in_the_nospace_form_too():
    # NFD input (jamo sequences) is composed, never scored jamo by jamo.
    import unicodedata

    s = metrics.utterance_scores(unicodedata.normalize("NFD", "한국어 음성"), "한국어음성")
    assert (s["nospace_edits"], s["nospace_chars"], s["chars"]) == (0, 5, 6)


def test_empty_reference_counts_are_kept_per_utterance_but_not_scored():
    s = metrics.utterance_scores("", "네 네")
    assert (s["chars"], s["char_edits"], s["word_edits"]) == (0, 3, 2)
    assert metrics.utterance_rate(s) is None
    assert metrics.aggregate([s])["n"] == 0 and metrics.aggregate([s])["cer"] == 0.0


def test_failed_utterances_are_counted_apart():
    scored = [{"error": "cannot read audio x.wav", "category": "D01"}, metrics.utterance_scores("네", "네")]
    overall = metrics.aggregate(scored)
    assert (overall["n"], overall["failed"], overall["empty_references"]) == (1, 1, 0)


def test_hallucination_indicators_by_hand():
    scored = [
        # 10 insertions over 6 characters
        metrics.utterance_scores("네 알겠습니다", "네 알겠습니다 감사합니다 감사합니다"),
        metrics.utterance_scores("여보세요", "그럼그럼그럼그럼"),  # a loop: 4 subs + 4 insertions over 4
        metrics.utterance_scores("네", ""),  # empty output
        # the speaker repeats himself: a faithful hypothesis is no loop
        metrics.utterance_scores("네 네 네 네 네 네 네 네", "네네네네네네네네"),
    ]
    overall = metrics.aggregate(scored)
    # no-space reference characters: 6 + 4 + 1 + 8 = 19; insertions: 10 + 4 + 0 + 0 = 14
    assert overall["insertion_rate"] == pytest.approx(14 / 19, abs=1e-6)
    assert overall["share_cer_over_100"] == 0.5  # 10/6 and 8/4
    assert overall["share_loops"] == 0.25
    assert overall["share_empty_output"] == 0.25
    assert overall["cer_nospace"] == pytest.approx((10 + 8 + 1 + 0) / 19, abs=1e-6)


def test_loop_detection():
    assert metrics.has_loop("감사합니다감사합니다감사합니다감사합니다")
    assert metrics.has_loop("아" * 8)
    assert not metrics.has_loop("아" * 7) and not metrics.has_loop("1000000원") and not metrics.has_loop("하하하")


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate():
    edits, lengths = [1, 0, 3, 2, 0, 5, 1, 0], [10, 8, 12, 9, 7, 11, 10, 6]
    low, high = metrics.bootstrap_interval(edits, lengths, resamples=500, seed=3)
    assert (low, high) == metrics.bootstrap_interval(edits, lengths, resamples=500, seed=3)
    assert low < sum(edits) / sum(lengths) < high
    assert metrics.bootstrap_interval([2, 2], [10, 10], resamples=50) == (0.2, 0.2)


def test_aggregate_adds_the_interval_only_when_asked():
    scored = [metrics.utterance_scores("가나다", "가나"), metrics.utterance_scores("라마", "라마")]
    assert "cer_nospace_ci_low" not in metrics.aggregate(scored)
    overall = metrics.aggregate(scored, resamples=200, seed=0)
    assert overall["cer_nospace_ci_low"] <= overall["cer_nospace"] <= overall["cer_nospace_ci_high"]


def test_kocer_scores_reading_equivalence_on_the_raw_label():
    pytest.importorskip("kocer")
    s = metrics.utterance_scores("세 개 주세요", "3개 주세요")
    s.update(metrics.kocer_scores("(3개)/(세 개) 주세요", "3개 주세요"))
    overall = metrics.aggregate([s])
    assert overall["kocer"] == 0.0 and overall["cer"] > 0


def test_kocer_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "kocer", None)  # as if not installed
    with pytest.raises(metrics.ScoringError, match=r"pip install 'kocer==0.4.0'"):
        metrics.kocer_module()


def _counts(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 40, n)
    return rng.binomial(lengths, 0.2), lengths


def test_the_interval_is_a_bootstrap_up_to_its_limit_and_the_delta_method_beyond():
    edits, lengths = _counts(metrics.BOOTSTRAP_MAX_N + 1)
    assert metrics.rate_interval(edits, lengths, resamples=20, seed=1) == metrics.delta_interval(edits, lengths)
    small = edits[:-1], lengths[:-1]
    assert metrics.rate_interval(*small, resamples=20, seed=1) == metrics.bootstrap_interval(
        *small, resamples=20, seed=1
    )
    assert metrics.interval_method(metrics.BOOTSTRAP_MAX_N) == "bootstrap"
    assert metrics.interval_method(metrics.BOOTSTRAP_MAX_N + 1) == "delta method"


def test_the_delta_method_agrees_with_the_bootstrap_within_its_monte_carlo_error():
    """Where the method switches, the figures must not jump: at 20,000 utterances each end of the
    delta interval lies within a tenth of the interval's half-width of the bootstrap's (2,000
    resamples: its own Monte Carlo error at the 2.5% quantile is about 5% of that half-width)."""
    edits, lengths = _counts(20_000)
    low, high = metrics.delta_interval(edits, lengths)
    b_low, b_high = metrics.bootstrap_interval(edits, lengths, resamples=2000, seed=0)
    half = (high - low) / 2
    assert abs(low - b_low) < 0.1 * half and abs(high - b_high) < 0.1 * half
    rate = edits.sum() / lengths.sum()
    assert low < rate < high and abs((low + high) / 2 - rate) < 1e-6
