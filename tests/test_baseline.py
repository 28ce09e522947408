"""`make demo`'s last word: whether this run's no-space CER lies within the committed run's 95%
bootstrap interval, per model (tools/baseline.py)."""

import json
import subprocess
import sys

from conftest import REPO, git


def metrics(cer, low=None, high=None) -> dict:
    return {"overall": {"cer_nospace": cer, "cer_nospace_ci_low": low, "cer_nospace_ci_high": high}}


def run(root):
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools/baseline.py")], cwd=root, capture_output=True, text=True, check=True
    )
    return proc.stdout


def test_a_rerun_is_compared_with_the_committed_interval_of_each_model(tmp_path):
    path = tmp_path / "metrics/benchmark.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"finetuned": metrics(0.20, 0.17, 0.25), "zero-shot": metrics(1.0, 0.9, 1.1)}))
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "baseline")
    path.write_text(json.dumps({"finetuned": metrics(0.24), "zero-shot": metrics(1.0)}))  # another machine's run
    out = run(tmp_path)
    assert "| finetuned | 24.00% | 20.00% | 17.00%–25.00% | agrees |" in out
    assert out.rstrip().endswith("every model's no-space CER lies within its 95% interval.")
    path.write_text(json.dumps({"finetuned": metrics(0.26), "zero-shot": metrics(1.0)}))
    out = run(tmp_path)
    assert "| finetuned | 26.00% | 20.00% | 17.00%–25.00% | outside the interval |" in out
    assert "does not agree with the committed baseline everywhere" in out


def test_without_a_commit_it_says_there_is_nothing_to_compare_with(tmp_path):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/benchmark.json").write_text(json.dumps({"finetuned": metrics(0.2)}))
    assert "No committed metrics/benchmark.json at HEAD to compare with" in run(tmp_path)
