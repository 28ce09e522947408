"""Manifests as typed records: what a stage reads is checked against the record's required fields."""

import json

import pytest

from whisper_ko import manifest
from whisper_ko.errors import UserError


def test_a_manifest_line_without_a_required_field_stops_the_stage_naming_file_line_and_field(tmp_path):
    rows = [{"id": "a", "audio": "a.wav", "duration": 1.0, "text": "안녕", "category": "D01"}, {"id": "b"}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    with pytest.raises(UserError, match=r"test\.jsonl line 2 has no audio, duration, text: rerun the discover stage"):
        manifest.read_split(tmp_path, "test", fields=("id", "category"))
    manifest.write(tmp_path / "test.jsonl", rows[:1])
    assert manifest.read_split(tmp_path, "test", fields=("id", "category")) == [{"id": "a", "category": "D01"}]


def test_every_field_discover_writes_is_one_of_the_records(test_rows):
    own = {"template", "sentence"}  # the sample corpus's own fields (which sentence a clip reads)
    assert all(set(manifest.Utterance.__annotations__) >= set(row) - own for row in test_rows)
