"""Whole calls (the benchmark's long-form track) and Whisper's loop guards, in both engines."""

import dataclasses
import json

import numpy as np
import pytest
from test_benchmark import OPTIONS, scoring_with

from whisper_ko import audio, comparison, config, deploy, dims, evaluation, long_form, metrics, scheduling, scoring
from whisper_ko_fixtures import tiny_model as tiny

pytestmark = pytest.mark.models  # decodes, trains or converts models: not in make test-fast


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("ct2") / "tiny-ct2"
    deploy.export(tiny_model, out, "float32")
    return out


def test_calls_hold_each_session_in_order_with_seeded_gaps_and_the_joined_reference(test_rows):
    calls = long_form.calls(test_rows, [0.3, 1.0], seed=0)
    sessions = list(dict.fromkeys(row["session"] for row in test_rows))
    assert [call["id"] for call in calls] == sessions
    for call in calls[:3]:
        parts = [row for row in test_rows if row["session"] == call["id"]]
        assert call["utterances"] == [row["id"] for row in parts]  # manifest order
        assert call["text"] == " ".join(row["text"] for row in parts)
        assert call["category"] == parts[0]["category"]
        paths, gaps = call["audio"]
        assert list(paths) == [row["audio"] for row in parts] and len(gaps) == len(parts) - 1
        assert all(0.3 <= gap <= 1.0 for gap in gaps)
        waves = [audio.load(path) for path in paths]
        wave = long_form.read(call["audio"])
        assert len(wave) == sum(len(w) for w in waves) + sum(round(gap * dims.SAMPLE_RATE) for gap in gaps)
        # each utterance in turn with the silence before it, where its span (from the manifest's
        # durations) says to a millisecond
        at = 0
        for k, (w, (start, end)) in enumerate(zip(waves, call["spans"], strict=True)):
            silence = round(gaps[k - 1] * dims.SAMPLE_RATE) if k else 0
            assert not wave[at : at + silence].any()
            at += silence
            np.testing.assert_array_equal(wave[at : at + len(w)], w)
            assert abs(start - at / dims.SAMPLE_RATE) < 1e-3 and abs(end - (at + len(w)) / dims.SAMPLE_RATE) < 1e-3
            at += len(w)
        assert abs(call["duration"] - len(wave) / dims.SAMPLE_RATE) < 0.01
    # gaps are seeded per call: the same seed gives the same calls, another seed other gaps
    assert long_form.calls(test_rows, [0.3, 1.0], seed=0) == calls
    assert long_form.calls(test_rows, [0.3, 1.0], seed=1)[0]["audio"][1] != calls[0]["audio"][1]
    assert any(call["duration"] > dims.CHUNK_LENGTH for call in calls)  # sequential decoding must move on


def test_timestamp_health_by_hand():
    spans = [[0.0, 4.0], [5.0, 9.0]]  # 8 s of speech in a 10-s call
    good = long_form.health([[0.0, 4.2], [4.9, 9.0]], spans, 10.0)
    assert good == {"monotonic": 1, "within": 1, "covered_s": 8.0, "speech_s": 8.0}
    # the second segment starts before the first ends, and ends past the call
    bad = long_form.health([[0.0, 6.0], [5.0, 12.0]], spans, 10.0)
    assert bad["monotonic"] == 0 and bad["within"] == 0 and bad["covered_s"] == 8.0
    # an end a few tenths past the audio is Whisper's usual imprecision, not a timestamp outside the call
    assert long_form.health([[0.0, 4.0], [5.0, 10.3]], spans, 10.0)["within"] == 1
    # only the first utterance transcribed, half of it stamped: 2 of 8 s covered
    assert long_form.health([[2.0, 4.0]], spans, 10.0)["covered_s"] == 2.0
    assert long_form.health([], spans, 10.0) == {"monotonic": 1, "within": 1, "covered_s": 0.0, "speech_s": 8.0}


def test_call_scores_add_up_over_calls():
    call = {"text": "가나다 라마", "spans": [[0.0, 2.0], [3.0, 5.0]], "duration": 6.0, "utterances": ["a", "b"]}
    looped = long_form.output([(0.0, 2.0, "가나다"), (2.0, 30.0, "네" * 20)], capped=1, fallback=None)
    clean = long_form.output([(0.0, 2.0, "가나다"), (3.0, 5.0, "라마")], capped=0, fallback=None)
    scored = [long_form.score(call, looped), long_form.score(call, clean)]
    out = long_form.aggregate(scored)
    assert out["n"] == 2 and out["share_loops"] == 0.5 and out["share_capped"] == 0.5
    assert out["share_within"] == 0.5 and out["share_monotonic"] == 1.0
    assert out["speech_covered"] == round((2.0 + 2.0 + 4.0) / 8.0, 6)  # 2 s + 2 s of the first, all of the second
    # corpus-level over calls: (라마 → 네네, 18 more 네 inserted: 20, then 0) edits over 5 + 5 characters
    assert out["cer_nospace"] == round(20 / 10, 6)
    assert "share_fallback_segments" not in out  # transformers does not say
    known = [long_form.score(call, {**clean, "fallback": 1})]
    assert long_form.aggregate(known)["share_fallback_segments"] == 0.5


def test_a_looping_model_is_counted_and_the_guards_engage_in_both_engines(test_rows, tiny_model, tmp_path):
    stub = tiny.looping(tiny_model, tmp_path / "looping")
    stub_ct2 = tmp_path / "looping-ct2"
    deploy.export(stub, stub_ct2, "float32")
    rows = test_rows[:4]
    plain = dataclasses.replace(OPTIONS.decoding, max_new_tokens=24)
    guarded = dataclasses.replace(plain, guards=config.Fallback())
    jobs = {
        f"{name} {way}": (str(path), decoding)
        for name, path in (("transformers", stub), ("ct2", stub_ct2))
        for way, decoding in (("off", plain), ("on", guarded))
    }
    results = evaluation.run(jobs, rows, OPTIONS, scoring_with(0))
    for engine in ("transformers", "ct2"):
        off, on = results[f"{engine} off"], results[f"{engine} on"]
        assert off.metrics["overall"]["share_loops"] == 1.0, off.transcripts.hypotheses  # every output loops
        assert all(set(h) == {"네"} and len(h) >= 8 for h in off.transcripts.hypotheses), off.transcripts.hypotheses
        # the guards decoded every output again: none is the greedy loop any more
        changed = comparison.compare({"off": off, "on": on}, "off", "on", scoring_with(0))
        assert changed.changed == 1.0 and on.metrics["overall"]["share_loops"] < 1.0, on.transcripts.hypotheses

    # a call: faster-whisper says which segments it decoded again at a higher temperature
    call = long_form.calls(rows, [0.3, 0.3], seed=0)[:1]
    long = dataclasses.replace(guarded, method="sequential", max_new_tokens=32)
    found = scheduling.transcribe({"ct2": (str(stub_ct2), long)}, call, OPTIONS)["ct2"]
    table, _, _ = scoring.score_calls(call, found, scoring_with(0))
    assert table["overall"]["share_fallback_segments"] > 0


def test_the_long_form_track_runs_end_to_end_in_both_engines(test_rows, tiny_model, exported):
    rows = [row for row in test_rows if row["category"] in ("D01", "D02")]
    settings = config.Benchmark(max_new_tokens=8, bootstrap_resamples=20)
    models = {"tiny": str(tiny_model), "tiny-ct2": str(exported)}
    found = evaluation.long_form_run(settings, OPTIONS.decoding, rows, models, OPTIONS, scoring_with(1000))
    assert {alias: set(methods) for alias, methods in found.items()} == {
        "tiny": {"sequential"},
        "tiny-ct2": {"sequential", "vad"},
    }
    sessions = len({row["session"] for row in rows})
    for methods in found.values():
        for result in methods.values():
            overall = result.metrics["overall"]
            assert overall["n"] + overall["empty_references"] + overall["failed"] == sessions
            assert set(result.metrics["by_category"]) == {"D01", "D02"}
            for key in ("cer_nospace", "cer_nospace_ci_low", "share_loops", "share_capped", "share_monotonic"):
                assert key in overall
            first = result.predictions[0]
            assert first["reference"] == " ".join(r["text"] for r in rows if r["session"] == first["id"])
            assert all(len(segment) == 3 for segment in first["segments"])
            assert json.dumps(result.predictions, ensure_ascii=False)  # written as JSONL
            assert result.speed["rtfx"] > 0
    assert "share_fallback_segments" in found["tiny-ct2"]["sequential"].metrics["overall"]
    assert "share_fallback_segments" not in found["tiny"]["sequential"].metrics["overall"]
    # bf16 weights and features on CPU: the dtype path a GPU takes, where a mismatch would only show there
    bf16 = dataclasses.replace(OPTIONS, dtype="bf16")
    half = evaluation.long_form_run(settings, bf16.decoding, rows, {"tiny": str(tiny_model)}, bf16, scoring_with(1000))
    assert half["tiny"]["sequential"].transcripts.dtype == "bfloat16"
    assert half["tiny"]["sequential"].metrics["overall"]["failed"] == 0


def test_korean_scoring_conventions_by_hand():
    # sWER: where the two differ only by spacing, the hypothesis takes the reference's
    assert metrics.respace("나는 학교에 간다", "나는학교 에 간다") == "나는 학교에 간다"
    assert metrics.respace("오늘 날씨 좋다", "오늘날씨 좋네") == "오늘 날씨 좋네"  # 네: substituted, own spacing
    pairs = [
        ("나는 학교에 간다", "나는학교 에 간다"),  # WER 2/3, sWER 0/3
        ("오늘 날씨 좋다", "오늘날씨 좋네"),  # WER 3/3 (S, D, S), sWER 1/3
        ("가나", "가나다라마바"),  # CER 4/2: over 100%, dropped from OpenKoASR's mean
        ("가나다라", "가나"),  # CER 2/4
    ]
    scored = [metrics.utterance_scores(ref, hyp) for ref, hyp in pairs]
    out = metrics.aggregate(scored)
    assert out["wer"] == round((2 + 3 + 1 + 1) / (3 + 3 + 1 + 1), 6)
    assert out["swer"] == round((0 + 1 + 1 + 1) / (3 + 3 + 1 + 1), 6)
    # character edits: 2 (a space deleted, one inserted), 2 (a space deleted, 다→네), 4, 2
    assert [s["char_edits"] for s in scored] == [2, 2, 4, 2]
    assert out["cer"] == round((2 + 2 + 4 + 2) / (9 + 8 + 2 + 4), 6)
    # OpenKoASR: the mean of per-utterance CER, the utterance over 100% dropped
    assert out["openkoasr_dropped"] == 1
    assert out["openkoasr_cer"] == round((2 / 9 + 2 / 8 + 2 / 4) / 3, 6)
