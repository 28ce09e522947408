import numpy as np
import pytest

from whisper_ko import shards


def test_records_come_back_exactly_in_any_order(tmp_path):
    rng = np.random.default_rng(0)
    written = []
    for s in range(2):
        writer = shards.ShardWriter(tmp_path / f"shard-{s:05d}", n_mels=80, dtype="float32")
        for i in range(5):
            feats = rng.standard_normal((80, 10 + i)).astype(np.float32)
            labels = list(range(i + 1))
            writer.add(f"u{s}{i}", feats, labels, 0.1 * i, "D01")
            written.append((f"u{s}{i}", feats, labels))
        writer.close()
    data = shards.open(tmp_path)
    assert len(data) == 10
    for k in [7, 0, 9, 3, -1]:
        record = data[k]
        uid, feats, labels = written[k]
        assert record["id"] == uid and record["labels"] == labels and record["category"] == "D01"
        np.testing.assert_array_equal(record["input_features"], feats)
    with pytest.raises(IndexError):
        data[10]


def test_float16_storage_rounds_only_to_half_precision(tmp_path):
    feats = np.random.default_rng(1).uniform(-1.5, 1.5, (128, 300)).astype(np.float32)
    writer = shards.ShardWriter(tmp_path / "s", n_mels=128)
    writer.add("a", feats, [1, 2], 3.0, None)
    writer.close()
    got = shards.open(tmp_path / "s")[0]["input_features"]
    assert got.dtype == np.float16
    assert np.abs(got.astype(np.float32) - feats).max() <= 1e-3
    # compressed per record: smaller than the raw fp16 bytes are not guaranteed for noise, but
    # the data file holds exactly one record's bytes and nothing padded
    assert (tmp_path / "s.bin").stat().st_size < 128 * 3000 * 2 / 5


def test_a_shard_without_index_is_not_complete(tmp_path):
    writer = shards.ShardWriter(tmp_path / "shard-00000", n_mels=80)
    writer.add("a", np.zeros((80, 3), np.float32), [1], 0.1, None)
    assert shards.shard_paths(tmp_path) == []  # killed before close: no index yet
    writer.close()
    assert [p.name for p in shards.shard_paths(tmp_path)] == ["shard-00000"]
    with pytest.raises(FileNotFoundError, match="preprocess"):
        shards.open(tmp_path / "empty_dir_that_is_not_there")
