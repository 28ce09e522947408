import json
import os
import re

import pytest
from test_bad_input import aihub_utterance

from whisper_ko import discover as discover_module
from whisper_ko.config import Discover, ParamsError
from whisper_ko.discover import discover
from whisper_ko.discover_report import SKIP_REASONS, discover_markdown
from whisper_ko.layouts import UnitScan
from whisper_ko_fixtures.sample_corpus.corpus import expected_discover

# sample_info.json kind → the reason discover must give
EXPECTED_REASON = {
    "corrupt_audio": "audio_unreadable",
    "empty_audio": "audio_empty",
    "audio_without_label": "audio_without_label",
    "label_without_audio": "label_without_audio",
    "empty_label": "empty_label",
    "tags_only": "empty_label",
    "long_audio": "audio_too_long",
}
LABEL_REASONS = {"label_without_audio", "empty_label"}


@pytest.fixture(scope="module")
def result(sample_corpus):
    return discover(Discover(root=str(sample_corpus), val_fraction=0.2, seed=0, workers=2))


@pytest.fixture(scope="module")
def info(sample_corpus):
    return json.loads((sample_corpus / "sample_info.json").read_text())


def test_every_broken_entry_is_skipped_for_its_reason(result, info, sample_corpus):
    _, report = result
    for entry in info["broken"]:
        if entry["kind"] == "cp949_label":
            continue
        reason = EXPECTED_REASON[entry["kind"]]
        # label problems name the label file, audio problems the audio file
        path = str(sample_corpus / (entry["label"] if reason in LABEL_REASONS else entry["audio"]))
        assert reason in report["skipped"], entry
        # examples are capped; the small corpus has few enough that each one is listed
        assert path in report["skipped"][reason]["examples"], (entry, report["skipped"][reason])


def test_cp949_label_is_kept_and_decoded(result, info):
    splits, _ = result
    cp949 = next(e for e in info["broken"] if e["kind"] == "cp949_label")
    key = "train/" + cp949["audio"].split("/", 3)[3].rsplit(".", 1)[0]  # the side keeps ids unique across splits
    row = next(r for rows in splits.values() for r in rows if r["id"] == key)
    assert any("\uac00" <= ch <= "\ud7a3" for ch in row["text"])


def test_counts_add_up(result, info):
    splits, report = result
    kept = sum(len(rows) for rows in splits.values())
    skipped = sum(e["count"] for e in report["skipped"].values())
    assert report["found"] == kept + skipped
    # what `make sample-data` announces
    expect = expected_discover(info)
    assert (report["found"], kept, skipped) == (expect["found"], expect["kept"], expect["skipped"])
    assert expect["kept_broken"] == ["cp949_label"] and len(expect["skipped_broken"]) == len(EXPECTED_REASON)
    assert report["kept"]["test"] == {f"D0{i}": info["counts"]["validation"][f"D0{i}"] for i in range(1, 5)}


def test_splits_are_leak_free(result):
    splits, _ = result
    train_sessions = {r["session"] for r in splits["train"]}
    val_sessions = {r["session"] for r in splits["val"]}
    assert splits["val"] and not train_sessions & val_sessions
    assert not {r["audio"] for r in splits["test"]} & {r["audio"] for r in splits["train"] + splits["val"]}
    assert all("2.Validation" in r["audio"] for r in splits["test"])
    assert {r["category"] for r in splits["val"]} == {"D01", "D02", "D03", "D04"}


def test_pairing_uses_the_full_path_when_session_ids_repeat(result, info, sample_corpus):
    splits, _ = result
    rows = {r["id"]: r for rows in splits.values() for r in rows}
    for folder in info["quirks"]["repeated_sessions"]:
        session = ("train/" if folder.startswith("1.") else "test/") + folder.split("/", 3)[3]
        same = [r for r in rows.values() if r["session"] == session]
        assert same, session
        for row in same:
            label = sample_corpus / folder / (row["id"].rsplit("/", 1)[1] + ".txt")
            assert row["raw_text"] == label.read_text(encoding="utf-8").strip()


def test_session_metadata_is_attached_and_unknowns_are_null(result):
    splits, _ = result
    rows = [r for rows in splits.values() for r in rows]
    assert {r["speaker_type"] for r in rows} == {"상담사1", "고객1"}
    assert all(r["subcategory"] for r in rows)
    assert any(r["age"] is None for r in rows) and not any(r["age"] in ("", "None", "알수없음") for r in rows)
    assert {r["network"] for r in rows} == {"8k"}


def test_manifests_are_identical_across_runs(result, sample_corpus):
    again, _ = discover(Discover(root=str(sample_corpus), val_fraction=0.2, seed=0, workers=1))
    assert again == result[0]


def test_stage_rewrites_byte_identical_manifests(sample_corpus, tmp_path):
    import yaml

    from conftest import REPO, run_stage

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["discover"].update(root=str(sample_corpus), workers=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    run_stage("discover", tmp_path)
    first = {p.name: p.read_bytes() for p in (tmp_path / "data/manifests").iterdir()}
    run_stage("discover", tmp_path)
    assert first == {p.name: p.read_bytes() for p in (tmp_path / "data/manifests").iterdir()}
    assert set(first) == {"train.jsonl", "val.jsonl", "test.jsonl"}
    report = json.loads((tmp_path / "reports/discover.json").read_text())
    assert report["found"] == report["kept_total"] + report["skipped_total"]
    # readable once: every skip reason explained with its examples, durations as h:mm, input as read
    text = (tmp_path / "reports/discover.md").read_text()
    for reason, entry in report["skipped"].items():
        assert f"- **{reason}** ({entry['count']}): {SKIP_REASONS[reason]}. Examples:" in text
        assert all(f"  - `{example}`" in text for example in entry["examples"])
    assert "| train |" in text and re.search(r"\| \d+:\d\d \|", text) and "duration (h:mm)" in text
    assert "| Transcript encoding | CP949, decoded: 1; UTF-8: " in text
    assert "8 kHz, resampled to 16 kHz" in text and "False" not in text


def test_the_workers_write_what_one_process_writes(sample_corpus, monkeypatch):
    """Units scanned and probed by a pool, merged in order, give the serial run's manifests and report."""
    config = Discover(root=str(sample_corpus), val_fraction=0.2, seed=0)
    serial = discover(config.model_copy(update={"workers": 1}))
    monkeypatch.setattr(discover_module, "SERIAL_BELOW", 0)  # the sample corpus would stay in-process
    monkeypatch.setattr(discover_module, "TASK_SIZE", 40)  # several tasks per worker, merged in order
    assert discover(config.model_copy(update={"workers": 2})) == serial


def _heap_mark(task, work):
    return [("seen", getattr(discover_module, "HEAP_MARK", None))], UnitScan([])


def test_the_workers_do_not_inherit_the_main_process_heap(monkeypatch):
    """A forked worker would see (then copy, page by page) whatever the main process holds: at a
    million clips, ~640 MB per worker. Workers a fork server starts see only what they import."""
    monkeypatch.setattr(discover_module, "HEAP_MARK", "the main process's", raising=False)
    tasks = [[1], [2], [3]]
    out = list(discover_module.run_tasks(_heap_mark, tasks, None, workers=2, total=3, size=10**6))
    assert [results for results, _ in out] == [[("seen", None)]] * 3


def test_a_session_json_describing_another_call_is_counted_not_applied(tmp_path):
    for call in ("S000001", "S000002"):
        for n in (1, 2, 3):
            aihub_utterance(tmp_path, "1.Training", f"D01/J01/{call}/000{n}", "네 알겠습니다")
        aihub_utterance(tmp_path, "2.Validation", f"D01/J01/{call}/0001", "감사합니다")
    dialogs = [{"speaker": "A", "audioPath": f"D01/J01/{call}/0001.wav"} for call in ("S000001", "S000002")]
    session = {"dataSet": {"typeInfo": {"subcategory": "요금", "speakers": [{"id": "A", "gender": "여"}]}}}
    session["dataSet"]["dialogs"] = dialogs
    json_path = tmp_path / "1.Training/라벨링데이터/D01/J01/S000001/S000001.json"
    json_path.write_text(json.dumps(session, ensure_ascii=False), encoding="utf-8")
    splits, report = discover(Discover(root=str(tmp_path), val_fraction=0.0, workers=1), need_val=False)
    rows = {r["id"]: r for rows in splits.values() for r in rows}
    assert rows["train/D01/J01/S000001/0001"]["gender"] == "여"
    assert "gender" not in rows["train/D01/J01/S000002/0001"]
    assert report["session_entries_elsewhere"] == {"count": 1, "examples": ["train/D01/J01/S000002/0001"]}
    assert "1 utterances kept without their session metadata" in discover_markdown(report)


def test_a_dask_cluster_writes_what_one_process_writes(sample_corpus, monkeypatch):
    """discover.engine dask: the same tasks on a Dask cluster's workers (here a local one of two
    processes, as `discover.scheduler: null` starts), merged in the same order."""
    config = Discover(root=str(sample_corpus), val_fraction=0.2, seed=0, workers=1)
    serial = discover(config)
    monkeypatch.setattr(discover_module, "TASK_SIZE", 40)
    assert discover(config.model_copy(update={"engine": "dask", "workers": 2})) == serial


def test_a_scheduler_without_the_dask_engine_is_a_params_error():
    with pytest.raises(ParamsError, match=r"discover\.scheduler is set but discover\.engine is local"):
        Discover(root="data/sample", scheduler="tcp://10.0.0.1:8786")


def test_a_call_folder_no_one_may_list_stops_discover_in_one_line(tmp_path, monkeypatch):
    aihub_utterance(tmp_path, "1.Training", "D01/J01/S000001/0001", "네")
    locked = str(tmp_path / "1.Training/원천데이터/D01/J01/S000001")
    scandir = os.scandir

    def refuse(path):  # what listing a folder without read permission does (root reads any folder)
        if str(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(discover_module.DiscoverError, match=r"Permission denied: .*S000001'; make it readable"):
        discover(Discover(root=str(tmp_path), workers=1), need_val=False)
