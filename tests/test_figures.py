"""The PNG figures: written where asked, the same bytes on every run, and drawing what they claim."""

import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from matplotlib.container import ErrorbarContainer

from whisper_ko import figures

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def leaf(cer, low=None, high=None, n=12):
    item = {"cer_nospace": cer, "n": n}
    if low is not None:
        item |= {"cer_nospace_ci_low": low, "cer_nospace_ci_high": high}
    return item


METRICS = {
    "zero-shot": {
        "overall": leaf(1.025, 0.917, 1.147, n=24),
        "by_category": {"D01": leaf(0.965, 0.793, 1.211), "D02": leaf(1.112, 0.885, 1.418)},
    },
    "finetuned": {
        "overall": leaf(0.617, 0.512, 0.731, n=24),
        "by_category": {"D01": leaf(0.467, 0.26, 0.66), "D02": leaf(0.762, 0.51, 1.12)},
    },
}


def write_curves(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "plots" / "metrics" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


CURVES = {
    "train/loss.tsv": "step\tloss\n10\t2.39\n20\t1.15\n30\t0.34\n",
    "eval/loss.tsv": "step\tloss\n17\t1.24\n34\t1.11\n",
    "eval/cer_nospace.tsv": "step\tcer_nospace\n17\t0.507\n34\t0.407\n",
    "eval/cer.tsv": "step\tcer\n17\t0.468\n34\t0.384\n",
    "eval/share_loops.tsv": "step\tshare_loops\n17\t0.25\n34\t0.0\n",
}


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_cer_png_is_written_at_the_figure_size(tmp_path):
    path = tmp_path / "new" / "dir" / "cer.png"
    figures.cer_by_category(METRICS, path)
    width, height = figures._cer_figure(METRICS).get_size_inches() * figures.DPI
    assert png_size(path) == (round(width), round(height)) == (1000, round(height))


def test_cer_figure_draws_intervals_the_100_percent_line_and_values():
    fig = figures._cer_figure(METRICS)
    ax = fig.axes[0]
    # one error-bar set per model, one bar per group: D01, D02, TOTAL
    errorbars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(errorbars) == 2
    assert [len(c.patches) for c in ax.containers if not isinstance(c, ErrorbarContainer)] == [3, 3]
    assert [t.get_text().split("\n")[0] for t in ax.get_yticklabels()] == ["D01", "D02", "TOTAL"]
    assert ax.get_yticklabels()[-1].get_text() == "TOTAL\nn=24"
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert [list(line.get_xdata()) for line in dashed] == [[100, 100]]
    legend_texts = [t.get_text() for legend in (*fig.legends, ax.get_legend()) for t in legend.get_texts()]
    assert "zero-shot" in legend_texts and "finetuned" in legend_texts
    assert any("100%" in t and "insertion" in t for t in legend_texts)
    values = {t.get_text().strip() for t in ax.texts}
    assert {"61.7", "102.5", "46.7"} <= values
    assert fig._suptitle.get_text() == figures.CER_TITLE
    assert ax.get_xlim()[1] > 100 * 1.418  # the widest interval and its label fit


def test_cer_figure_without_intervals_has_no_error_bars():
    metrics = {m: {"overall": leaf(0.5), "by_category": {"D01": leaf(0.4)}} for m in ("a", "b")}
    ax = figures._cer_figure(metrics).axes[0]
    assert not [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert ax.get_xlim()[1] >= 100  # the 100% line is always in view


def test_figures_are_byte_identical_across_processes(tmp_path):
    curves = write_curves(tmp_path / "dvclive", CURVES)
    script = textwrap.dedent(
        """
        import json, sys
        from pathlib import Path
        from whisper_ko import figures
        out = Path(sys.argv[1])
        figures.cer_by_category(json.loads(sys.argv[2]), out / "cer.png")
        assert figures.training_curves(Path(sys.argv[3]), out / "curves.png")
        """
    )
    for run in ("a", "b"):
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / run), json.dumps(METRICS), str(curves)],
            check=True,
            cwd=tmp_path,
        )
    for name in ("cer.png", "curves.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert b"Software" not in (tmp_path / "a" / name).read_bytes()  # no matplotlib version stamp


def test_training_curves_png(tmp_path):
    path = tmp_path / "out" / "curves.png"
    assert figures.training_curves(write_curves(tmp_path / "dvclive", CURVES), path)
    assert png_size(path) == (1000, 400)
    loss_ax, cer_ax = figures._curves_figure(tmp_path / "dvclive").axes
    assert [line.get_label() for line in loss_ax.get_lines()] == ["training loss", "validation loss"]
    assert list(cer_ax.get_lines()[0].get_ydata()) == pytest.approx([50.7, 40.7])  # percent
    loops = cer_ax.get_lines()[2]  # the val loop rate beside CER, in percent too
    assert loops.get_label() == "validation utterances in a loop" and list(loops.get_ydata()) == pytest.approx([25, 0])


@pytest.mark.parametrize(
    "files",
    [{}, {"train/loss.tsv": "step\tloss\n"}, {"eval/cer_nospace.tsv": "step\tcer_nospace\n"}],
    ids=["no-files", "header-only", "eval-header-only"],
)
def test_training_curves_without_data_write_nothing(tmp_path, files):
    path = tmp_path / "curves.png"
    assert not figures.training_curves(write_curves(tmp_path / "dvclive", files), path)
    assert not path.exists()
    assert not figures.training_curves(tmp_path / "missing", path)  # no dvclive directory at all


def test_training_curves_with_only_training_loss(tmp_path):
    curves = write_curves(tmp_path / "dvclive", {"train/loss.tsv": CURVES["train/loss.tsv"]})
    assert figures.training_curves(curves, tmp_path / "curves.png")
    loss_ax, cer_ax = figures._curves_figure(curves).axes
    assert [line.get_label() for line in loss_ax.get_lines()] == ["training loss"]
    assert not cer_ax.get_lines() and [t.get_text() for t in cer_ax.texts] == ["no data"]
