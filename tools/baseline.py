"""Does this run's answer agree with the committed baseline? Each model's overall no-space CER
beside the committed run's and its 95% bootstrap interval: `make demo` ends on this. On another
machine training's floating-point results differ in late digits (docs/reproducibility.md), so a
rerun's CER moves; within the interval, the difference is one the test set cannot tell from chance.

    python tools/baseline.py [--metrics metrics/benchmark.json] [--ref HEAD]
"""

import json
import subprocess
import sys
from pathlib import Path

import click


def committed(path: Path, ref: str) -> dict | None:
    """`path` as committed at `ref`, or None outside a git checkout or where it was never committed."""
    proc = subprocess.run(["git", "show", f"{ref}:./{path.name}"], capture_output=True, text=True, cwd=path.parent)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def compare(now: dict, baseline: dict) -> tuple[list[list[str]], bool]:
    """Table rows (model, now, committed, its interval, verdict) and whether every model agrees."""
    rows, agree = [], True
    for alias, metrics in baseline.items():
        then = metrics.get("overall", {})
        low, high = then.get("cer_nospace_ci_low"), then.get("cer_nospace_ci_high")
        value = now.get(alias, {}).get("overall", {}).get("cer_nospace")
        if value is None:
            verdict = "not in this run"
        elif low is None or high is None:
            verdict = "no interval committed (benchmark.bootstrap_resamples: 0)"
        else:
            inside = low <= value <= high
            agree &= inside
            verdict = "agrees" if inside else "outside the interval"
        rows.append([alias, _pct(value), _pct(then.get("cer_nospace")), f"{_pct(low)}–{_pct(high)}", verdict])
    return rows, agree and bool(rows)


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


@click.command()
@click.option("--metrics", "metrics_path", default="metrics/benchmark.json", show_default=True)
@click.option("--ref", default="HEAD", show_default=True, help="The commit whose metrics are the baseline.")
def main(metrics_path, ref):
    path = Path(metrics_path).resolve()
    if not path.is_file():
        sys.exit(f"{metrics_path} not found: run the pipeline first (make demo)")
    baseline = committed(path, ref)
    if baseline is None:
        click.echo(f"No committed {metrics_path} at {ref} to compare with (not a git checkout?).")
        return
    rows, agree = compare(json.loads(path.read_text()), baseline)
    click.echo(f"Against the committed baseline ({metrics_path} at {ref}), overall no-space CER:")
    header = ["model", "this run", "committed", "committed 95% interval", ""]
    for row in (header, ["---"] * len(header), *rows):
        click.echo("| " + " | ".join(row) + " |")
    click.echo(
        "This run agrees with the committed baseline: every model's no-space CER lies within its 95% interval."
        if agree
        else "This run does not agree with the committed baseline everywhere: see the rows outside their interval "
        "(another machine's training differs in late digits: docs/reproducibility.md)."
    )


if __name__ == "__main__":
    main()
