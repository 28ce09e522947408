"""discover throughput on a generated AI Hub telephone tree, beside the reference pairing approach.

Generates (once, into --tree) a corpus in the 571 layout with --utterances utterances
(`whisper_ko_fixtures.telephone_tree`). Then, in one run, times
  (a) the reference approach: glob the WAVs, derive each label path by string replacement, read the
      labels with a process pool; no header checks, no normalisation, no accounting;
  (b) `whisper_ko.discover.discover`: scan, pair by full path, header probe, label decode and
      normalisation, session metadata, splits, report;
and prints files/s for both (files = audio + labels + session JSONs) and the ratio.
Target for (b): at least 2,000 files/s on 2 cores on local disk.

    python benchmarks/discover.py --utterances 10000 --workers 2
"""

import os
import shutil
import time
from multiprocessing import Pool
from pathlib import Path

import click

from whisper_ko.config import Discover
from whisper_ko.discover import discover
from whisper_ko_fixtures.telephone_tree import generate_tree


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def reference_discover(root: Path, workers: int) -> list[tuple[str, str]]:
    """The reference approach: glob WAVs, swap the tree names to find labels, read labels in a pool."""
    wavs = sorted(str(p) for p in root.rglob("*.wav"))
    labels = [
        w.replace("원천데이터", "라벨링데이터").replace("/TS_", "/TL_").replace("/VS_", "/VL_")[:-4] + ".txt"
        for w in wavs
    ]
    with Pool(workers) as pool:
        texts = pool.map(_read_text, labels, chunksize=256)
    return list(zip(wavs, texts, strict=True))


@click.command()
@click.option("--tree", default="/tmp/whisper-ko-discover-bench", show_default=True, type=click.Path())
@click.option("--utterances", default=10000, show_default=True, help="≥ 10,000 gives ≥ 20,000 files")
@click.option("--workers", default=os.cpu_count(), show_default=True)
def main(tree, utterances, workers):
    root = Path(tree)
    marker = root / f".generated-v2-{utterances}"
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        start = time.perf_counter()
        files = generate_tree(root, utterances)
        marker.write_text(str(files))
        click.echo(f"generated {files} files in {time.perf_counter() - start:.1f} s")
    files = int(marker.read_text())

    timings = {}
    for name, run in (
        ("reference", lambda: reference_discover(root, workers)),
        ("whisper_ko", lambda: discover(Discover(root=str(root), workers=workers))),
    ):
        run()  # warm the page cache: both are then measured on a warm local disk
        start = time.perf_counter()
        result = run()
        timings[name] = time.perf_counter() - start
        if name == "whisper_ko":
            report = result[1]
    click.echo(f"{files} files ({utterances} utterances), {workers} workers, warm page cache")
    click.echo("| approach | what it checks | seconds | files/s |")
    click.echo("|---|---|---|---|")
    click.echo(
        f"| reference (glob + read labels) | pairing by name only | {timings['reference']:.2f} | "
        f"{files / timings['reference']:.0f} |"
    )
    click.echo(
        f"| whisper_ko discover | headers, labels, notation, metadata, splits | {timings['whisper_ko']:.2f} | "
        f"{files / timings['whisper_ko']:.0f} |"
    )
    click.echo(
        f"ratio whisper_ko / reference: {timings['reference'] / timings['whisper_ko']:.2f}x; "
        f"kept {report['kept_total']}, skipped {report['skipped_total']}"
    )


if __name__ == "__main__":
    main()
