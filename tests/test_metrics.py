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
