"""reports/discover.md: what discover found, kept and skipped, for a person. Apart from the
benchmark's report, so that editing either reruns only its own stage."""

from whisper_ko.formatting import hours_minutes

# Why discover skipped an utterance, for a reader who has not read the code.
SKIP_REASONS = {
    "audio_empty": "the audio has no samples",
    "audio_missing": "the audio file the label names does not exist",
    "audio_not_finite": "the audio has NaN or infinite samples",
    "audio_same_stem": "another audio file of the same name in the same folder (x.wav beside x.flac) is used",
    "audio_too_long": "longer than discover.max_duration (Whisper hears 30 s at most)",
    "audio_unreadable": "the audio file cannot be decoded",
    "audio_without_label": "an audio file with no transcript beside it",
    "control_characters": "the transcript holds control characters (NUL, BEL, …): another codec or a damaged file",
    "empty_label": "the transcript is empty after normalisation",
    "features_not_finite": "float audio whose log-mel features are not finite (huge sample values)",
    "label_encoding_suspect": "decoded only by a guess (CP949, UTF-16 without BOM), it does not read as Korean",
    "label_too_long": "more label tokens than preprocess.max_label_tokens",
    "label_undecodable": "the transcript is neither UTF-8, UTF-16 nor CP949",
    "label_without_audio": "a transcript with no audio beside it",
    "malformed_notation": "transcription notation that cannot be read unambiguously (text params)",
    "manifest_line_duplicate": "a manifest line naming an utterance (id or audio) an earlier line named",
    "manifest_line_invalid": "a manifest line that is not a JSON object with an audio path and text",
    "masked_span": "a masked (( … )) span, with text.masked: drop",
    "over_max_per_category": "beyond discover.max_per_category",
    "same_audio_as_a_test_utterance": "the same audio as a test utterance (a copy or link): never trained on",
    "symlink_loop": "a symbolic link that loops",
}
# How discover read what it kept, per note: a title, then how each value reads.
KEPT_INPUT = {
    "sample_rate": (
        "Sample rate",
        lambda v: f"{int(v) / 1000:g} kHz" + ("" if v == "16000" else ", resampled to 16 kHz"),
    ),
    "channels": ("Channels", lambda v: {"1": "mono"}.get(v, f"{v} channels, downmixed to mono")),
    "label_encoding": ("Transcript encoding", lambda v: v.upper() if v == "utf-8" else f"{v.upper()}, decoded"),
    "markup_left_in_text": (
        "Notation left in the text after normalisation",
        lambda v: {"False": "none", "True": "some (check the text params)"}[v],
    ),
    "no_hangul": ("Script of the transcripts", lambda v: {"False": "Hangul", "True": "no Hangul (another script?)"}[v]),
}


def discover_markdown(report: dict) -> str:
    """reports/discover.md: found = kept + skipped, per split and category; every skip reason
    explained with examples; how the kept input was read."""
    categories = sorted({c for per in report["kept"].values() for c in per})
    lines = [
        f"# discover: {report['found']} utterances found = {report['kept_total']} kept + "
        f"{report['skipped_total']} skipped",
        "",
        f"Corpus: `{report['root']}` ({report['layout']} layout)",
        "",
        "| split | " + " | ".join(categories) + " | utterances | sessions | duration (h:mm) |",
        "|---" * (len(categories) + 4) + "|",
    ]
    for split, per in report["kept"].items():
        cells = " | ".join(str(per.get(c, 0)) for c in categories)
        duration = hours_minutes(report["hours"][split])
        lines.append(f"| {split} | {cells} | {sum(per.values())} | {report['sessions'][split]} | {duration} |")
    held_by = report.get("val_held_out_by")
    lines += [
        "",
        f"Val: whole `{held_by}` groups held out of training (discover.val_by)."
        if held_by
        else "Val: the corpus's own validation side.",
    ]
    if not report["kept"]["test"]:
        lines += ["", "**No test split**: the corpus has no evaluation side; set `discover.test_fraction`."]
    if elsewhere := report.get("session_entries_elsewhere"):
        lines += [
            "",
            f"**{elsewhere['count']} utterances kept without their session metadata**: a session JSON outside "
            f"their call's folder described them, and discover reads a call's own JSONs only. Examples: "
            + ", ".join(f"`{key}`" for key in elsewhere["examples"]),
        ]
    lines += ["", f"## Skipped: {report['skipped_total']}", ""]
    for reason, entry in report["skipped"].items():
        lines.append(f"- **{reason}** ({entry['count']}): {SKIP_REASONS.get(reason, reason)}. Examples:")
        lines += [f"  - `{example}`" for example in entry["examples"]]
    lines += ["", "## Kept, as found", "", "| | |", "|---|---|"]
    for name, counts in report["kept_input"].items():
        title, reads = KEPT_INPUT.get(name, (name, str))
        lines.append(f"| {title} | " + "; ".join(f"{reads(k)}: {v}" for k, v in counts.items()) + " |")
    return "\n".join(lines) + "\n"
