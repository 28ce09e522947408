"""PNG figures for people: the benchmark's CER per category and model, and the training curves.

The PNGs are committed, and a re-run of the pipeline must leave the tree clean, so the same input
gives the same bytes: matplotlib's default style (no user matplotlibrc), its bundled DejaVu font,
a size fixed by the input, dpi 100 and no "Software" stamp (the matplotlib version) in the PNG.
Figures are built on an Agg canvas without pyplot: nothing here needs or changes a display backend.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

DPI = 100
WIDTH = 10.0  # inches: 1000 px at DPI
CER_TITLE = "CER without spaces and punctuation, by category (95% bootstrap interval)"
LONG_FORM_TITLE = "Whole calls: CER without spaces and punctuation, by category (95% bootstrap interval)"
OVER_100 = "100%: CER can exceed it, as insertions (e.g. repetition loops) count as errors"


def cer_by_category(metrics: dict[str, dict], path: Path, title: str = CER_TITLE) -> None:
    """Grouped bars of `cer_nospace` (%) per category and TOTAL, one bar per model, CI as error bars."""
    with matplotlib.style.context("default"):  # a user's matplotlibrc would change the bytes
        _save(_cer_figure(metrics, title), path)


def note(path: Path, text: str) -> None:
    """A figure that only says why there is nothing to draw, so that its path, a DVC output, exists."""
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(WIDTH, 1.2), dpi=DPI)
        FigureCanvasAgg(fig)
        fig.text(0.5, 0.5, text, ha="center", va="center", color="gray")
        _save(fig, path)


def training_curves(curves_dir: Path, path: Path) -> bool:
    """Loss (train, validation) and validation CER against step, from DVCLive's TSVs under
    `curves_dir/plots/metrics/`. False, and nothing written, when there is no point to plot."""
    with matplotlib.style.context("default"):
        fig = _curves_figure(curves_dir)
        if fig is None:
            return False
        _save(fig, path)
    return True


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})


def _cer_figure(metrics: dict[str, dict], title: str = CER_TITLE) -> Figure:
    models = list(metrics)
    categories = sorted({c for m in metrics.values() for c in m.get("by_category", {})})
    groups = [*categories, "TOTAL"]

    # Horizontal bars: the value labels sit to the right of each bar, where 5 models x 11 groups
    # still leave room for them. The height grows with the bars so each stays about
    # 16 px tall (14 in for 5 models x 11 groups).
    slot = 0.8 / len(models)  # height of one bar within a group 1 unit tall
    height = max(3.5, 2.0 + 0.22 * len(models) * len(groups))  # + title, axis label and legend rows
    fig = Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = [f"C{i}" for i in range(len(models))]  # the default cycle: the same model, the same colour

    right = 100.0  # the x axis always shows the 100% line
    for i, model in enumerate(models):
        ys, values, lows, highs = [], [], [], []
        for g, group in enumerate(groups):
            item = _leaf(metrics, model, group)
            if item is None or item.get("cer_nospace") is None:
                continue
            ys.append(g - 0.4 + slot * (i + 0.5))
            value, low, high = (item.get(k) for k in ("cer_nospace", "cer_nospace_ci_low", "cer_nospace_ci_high"))
            values.append(100 * value)
            # no interval: a zero-width one, drawn without an error bar (0.0 is a real bound)
            lows.append(100 * (value if low is None else low))
            highs.append(100 * (value if high is None else high))
        ax.barh(ys, values, height=slot * 0.9, color=colours[i], label=model)
        with_ci = [k for k in range(len(ys)) if highs[k] > lows[k]]
        if with_ci:
            ax.errorbar(
                [values[k] for k in with_ci],
                [ys[k] for k in with_ci],
                xerr=[[values[k] - lows[k] for k in with_ci], [highs[k] - values[k] for k in with_ci]],
                fmt="none",
                ecolor="black",
                elinewidth=1,
                capsize=3,
            )
        for y, value, high in zip(ys, values, highs, strict=True):
            # right of the interval's end, so the label never sits on the error bar
            ax.text(max(value, high), y, f" {value:.1f}", va="center", ha="left", fontsize=8)
        right = max(right, *highs, *values)

    ax.axvline(100, color="black", linestyle="--", linewidth=1, alpha=0.7, zorder=3)  # over the bars
    ax.set_xlim(0, right * 1.12)  # room for the last value label
    ax.set_yticks(range(len(groups)), [_group_label(metrics, models, g) for g in groups])
    ax.get_yticklabels()[-1].set_fontweight("bold")
    ax.set_ylim(len(groups) - 0.5, -0.5)  # first category on top, TOTAL at the bottom
    if categories:
        ax.axhline(len(groups) - 1.5, color="lightgray", linewidth=1)  # sets TOTAL apart
    ax.set_xlabel("CER without spaces and punctuation (%)")
    ax.grid(axis="x", color="0.92")
    ax.set_axisbelow(True)
    # Legends outside the axes, where they cannot cover a bar: the models above the axes, as many to
    # a row as fit (about 7 px a character at 9 pt, 40 px for the patch and padding), the 100% line
    # below. The models' is an axes legend anchored on top: constrained layout stacks it under the
    # suptitle, where a figure legend placed "outside upper" would overlap it.
    fig.suptitle(title)
    ncol = max(1, min(len(models), int(WIDTH * DPI * 0.95) // (7 * max(map(len, models)) + 40)))
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=ncol, fontsize=9, frameon=False)
    line = Line2D([], [], color="black", linestyle="--", linewidth=1, alpha=0.7)
    fig.legend([line], [OVER_100], loc="outside lower center", fontsize=9, frameon=False)
    return fig


def _group_label(metrics: dict[str, dict], models: list[str], group: str) -> str:
    """The category, with its utterance count when the models agree on one."""
    counts = {item["n"] for model in models if "n" in (item := _leaf(metrics, model, group) or {})}
    return f"{group}\nn={counts.pop()}" if len(counts) == 1 else group


def _leaf(metrics: dict[str, dict], model: str, group: str) -> dict | None:
    m = metrics[model]
    return m.get("overall") if group == "TOTAL" else m.get("by_category", {}).get(group)


def _curves_figure(curves_dir: Path) -> Figure | None:
    metrics = Path(curves_dir) / "plots" / "metrics"
    left = {
        "training loss": _series(metrics / "train" / "loss.tsv"),
        "validation loss": _series(metrics / "eval" / "loss.tsv"),
    }
    right = {
        "validation CER without spaces": _series(metrics / "eval" / "cer_nospace.tsv", scale=100),
        "validation CER": _series(metrics / "eval" / "cer.tsv", scale=100),
        "validation utterances in a loop": _series(metrics / "eval" / "share_loops.tsv", scale=100),
    }
    if not any(left.values()) and not any(right.values()):
        return None

    fig = Figure(figsize=(WIDTH, 4.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, cer_ax = fig.subplots(1, 2)
    for ax, series, title, ylabel in (
        (loss_ax, left, "Loss", "loss"),
        (cer_ax, right, "Validation CER and loops", "%"),
    ):
        drawn = {label: points for label, points in series.items() if points}
        for label, points in drawn.items():
            steps, values = zip(*points, strict=True)
            # markers: evaluations are few, and a single one would otherwise be invisible
            ax.plot(steps, values, marker="o" if len(points) <= 30 else None, markersize=3, label=label)
        if drawn:
            ax.legend(fontsize=9)
        else:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="gray")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(color="0.92")
    return fig


def _series(path: Path, scale: float = 1.0) -> list[tuple[float, float]]:
    """(step, value) rows of one DVCLive TSV (`step` and a column named after the file); [] if none."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    column = path.stem
    return [(float(r["step"]), scale * float(r[column])) for r in rows if r.get(column) not in (None, "")]
