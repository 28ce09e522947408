"""`make gpu-check`'s CPU-runnable parts, so the script a GPU host runs cannot rot."""

import json
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_the_cpu_runnable_parts_pass_and_end_on_a_json_summary(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools/gpu_check.py"), "--allow-cpu", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout[proc.stdout.rindex("\n{\n") :])  # the last thing printed
    assert summary == json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["ok"] and summary["failures"] == [] and summary["host"]["gpus"] == 0
    runs = {run["name"]: run for run in summary["train"]}
    assert runs.pop("fp16_full") == {"name": "fp16_full", "skipped": "fp16 needs a CUDA GPU"}
    assert set(runs) == {
        "bf16_full",
        "bf16_activation_checkpointing",
        "bf16_lora",
        "bf16_freeze_encoder",
        "bf16_float16_config_base",
    }
    for run in runs.values():
        assert run["ok"] and run["precision"] == "bf16" and run["attention"] == "sdpa" and run["samples_per_s"] > 0
    assert summary["ddp"] == {"skipped": "needs two GPUs"}
    assert {"base", "finetuned"} <= set(summary["benchmark"]) and summary["benchmark"]["finetuned"]["workers"] == 2
    assert all(summary["benchmark"][alias]["calls_sequential_rtfx"] > 0 for alias in ("base", "finetuned"))
    presets = {preset["preset"]: preset for preset in summary["presets"]}
    assert set(presets) == {"whisper-small", "whisper-large-v3", "whisper-large-v3-turbo"}
    assert all(p["ok"] and p["samples_per_s"] > 0 for p in presets.values())
    # packed windows: six utterances a window, longer labels, a step that costs more
    for p in presets.values():
        assert (p["single"]["label_tokens"], p["packed"]["label_tokens"]) == (24, 128)
        assert p["packed"]["utterances_per_s"] == pytest.approx(6 * p["packed"]["windows_per_s"], rel=0.02)
        assert p["packed_speedup"] > 1
    assert (
        presets["whisper-large-v3"]["gradient_checkpointing"] and not presets["whisper-small"]["gradient_checkpointing"]
    )
    assert [row["batch"] for row in summary["generate"]["rows"]] == [2, 4]
    assert not list(tmp_path.glob("tmp*"))  # the work directory is removed


def test_without_a_gpu_it_refuses_unless_asked_for_the_cpu_parts(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools/gpu_check.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stderr.strip() == (
        "Error: no CUDA GPU is visible: this check is for GPU hosts (--allow-cpu runs the CPU parts)"
    )
