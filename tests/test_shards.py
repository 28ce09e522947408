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


@pytest.mark.models
def test_a_flipped_byte_anywhere_in_a_shard_is_caught_naming_the_shard(tmp_path):
    """Before record checksums a flipped byte changed a record's features silently (39 of 40
    trials) or raised zstd's own error naming no shard."""
    writer = shards.ShardWriter(tmp_path / "shard-00000", n_mels=80)
    rng = np.random.default_rng(2)
    for i in range(3):
        writer.add(f"u{i}", rng.uniform(-1, 1, (80, 4)).astype(np.float32), [1, 2, 3], 0.04, "D01")
    writer.close()
    for suffix in (shards.DATA_SUFFIX, shards.INDEX_SUFFIX):
        path = (tmp_path / "shard-00000").with_suffix(suffix)
        clean = path.read_bytes()
        for position in range(len(clean)):
            flipped = bytearray(clean)
            flipped[position] ^= 0x01
            path.write_bytes(flipped)
            with pytest.raises(shards.CorruptShard, match=r"feature shard .*shard-00000 is corrupt") as caught:
                data = shards.open(tmp_path)
                [data[i] for i in range(len(data))]
            assert shards.verify(tmp_path / "shard-00000") is not None, (suffix, position)
        path.write_bytes(clean)
    record = shards.open(tmp_path)[1]  # intact again
    assert record["id"] == "u1" and shards.verify(tmp_path / "shard-00000") is None
    # a record's bytes: the message names the utterance too (the last record ends before the digest)
    data = tmp_path / "shard-00000.bin"
    clean = data.read_bytes()
    data.write_bytes(
        clean[: -shards.DIGEST_SIZE - 1] + bytes([clean[-shards.DIGEST_SIZE - 1] ^ 1]) + clean[-shards.DIGEST_SIZE :]
    )
    with pytest.raises(shards.CorruptShard) as caught:
        shards.open(tmp_path)[2]
    assert "record 2, u2, fails its checksum" in str(caught.value) and "\n" not in str(caught.value)
