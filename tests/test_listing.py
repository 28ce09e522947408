"""The corpus listing DVC checks in place of the corpus's bytes: a file changed, added or removed
changes it; nothing else does."""

import os

import pytest

from whisper_ko import listing
from whisper_ko.errors import UserError


def _tree(root):
    for key in ("D01/J01/S1/0001", "D01/J01/S1/0002", "D02/J01/S2/0001"):
        (root / f"{key}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / f"{key}.txt").write_text("네", encoding="utf-8")
        (root / f"{key}.wav").write_bytes(b"RIFF" + bytes(40))
    return root


def _lines(root, out):
    listing.write(root, out)
    return out.read_text(encoding="utf-8").splitlines()


def test_a_listing_names_every_file_in_walk_order_and_is_the_same_twice(tmp_path):
    root = _tree(tmp_path / "corpus")
    first = _lines(root, tmp_path / "a.tsv")
    assert first[0] == listing.HEADER and len(first) == 7
    assert [line.split("\t")[0] for line in first[1:3]] == ['"D01/J01/S1/0001.txt"', '"D01/J01/S1/0001.wav"']
    assert first == _lines(root, tmp_path / "b.tsv")


def test_a_touched_added_or_removed_file_changes_the_listing(tmp_path):
    root = _tree(tmp_path / "corpus")
    before = _lines(root, tmp_path / "l.tsv")
    label = root / "D01/J01/S1/0002.txt"
    os.utime(label, ns=(label.stat().st_atime_ns, label.stat().st_mtime_ns + 10**9))
    touched = _lines(root, tmp_path / "l.tsv")
    assert [a != b for a, b in zip(before, touched, strict=True)].count(True) == 1
    (root / "D02/J01/S2/0002.wav").write_bytes(b"RIFF")
    assert len(_lines(root, tmp_path / "l.tsv")) == len(before) + 1
    (root / "D02/J01/S2/0002.wav").unlink()
    label.unlink()
    assert len(_lines(root, tmp_path / "l.tsv")) == len(before) - 1


def test_a_link_back_up_is_not_followed_and_a_missing_root_is_one_line(tmp_path):
    root = _tree(tmp_path / "corpus")
    (root / "D01/J01/loop").symlink_to(root / "D01", target_is_directory=True)
    assert len(_lines(root, tmp_path / "l.tsv")) == 7
    with pytest.raises(UserError, match=r"discover\.root .*no such file or folder"):
        listing.write(tmp_path / "nowhere", tmp_path / "l.tsv")


def test_a_jsonl_root_lists_the_manifest_itself(tmp_path):
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("{}\n", encoding="utf-8")
    lines = _lines(manifest, tmp_path / "l.tsv")
    assert len(lines) == 2 and lines[1].startswith('"train.jsonl"\t3\t')
