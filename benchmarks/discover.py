"""discover throughput on a generated AI Hub telephone tree, beside the reference pairing approach.

Generates (once, into --tree) a corpus in the 571 layout with --utterances utterances: one short
8 kHz WAV and one label per utterance, one session JSON per session, a corrupt WAV per 50 sessions. Then, in
one run, times
  (a) the reference approach: glob the WAVs, derive each label path by string replacement, read the
      labels with a process pool; no header checks, no normalisation, no accounting;
  (b) `whisper_ko.discover.discover`: scan, pair by full path, header probe, label decode and
      normalisation, session metadata, splits, report;
and prints files/s for both (files = audio + labels + session JSONs) and the ratio.
Target for (b): at least 2,000 files/s on 2 cores on local disk.

    python benchmarks/discover.py --utterances 10000 --workers 2
"""

import json
import os
import shutil
import struct
import time
from multiprocessing import Pool
from pathlib import Path

import click
import numpy as np

from whisper_ko.config import Discover
from whisper_ko.discover import discover

SENTENCES = [
    "네 (3)/(삼) 번 상품 주문하신 거 맞으시죠",
    "o/ 어/ 배송은 (10시)/(열 시) 이후에 출발합니다",
    "고객님 본인 확인을 위해 성함 말씀해 주시겠어요",
    "n/ 환불은 영업일 기준 (3일)/(삼 일) 걸립니다",
]


def wav_bytes(samples: np.ndarray, sr: int = 8000) -> bytes:
    data = samples.astype("<i2").tobytes()
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sr, sr * 2, 2, 16)
        + b"data"
        + struct.pack("<I", len(data))
    )
    return header + data


def generate_tree(root: Path, utterances: int, per_session: int = 8, seconds: float = 2.0) -> int:
    """The telephone layout with `utterances` pairs of `seconds`-long clips; returns the number of
    files written."""
    rng = np.random.default_rng(0)
    audio = wav_bytes((rng.standard_normal(int(8000 * seconds)) * 1000).clip(-32768, 32767))
    files = 0
    for i in range(utterances // per_session):
        side, prefix = ("1.Training", "T") if i % 10 else ("2.Validation", "V")
        domain = f"D0{i % 4 + 1}"
        rel = Path(domain) / f"J{i % 7 + 1:02d}" / f"S{i:06d}"
        src = root / side / "원천데이터_230316" / f"{prefix}S_{domain}" / rel
        lab = root / side / "라벨링데이터_230316" / f"{prefix}L_{domain}" / rel
        src.mkdir(parents=True, exist_ok=True)
        lab.mkdir(parents=True, exist_ok=True)
        dialogs = []
        for u in range(1, per_session + 1):
            broken = i % 50 == 0 and u == 1  # one corrupt WAV per 50 sessions
            # each clip its own first samples: discover drops training copies of test audio
            unique = audio[:44] + struct.pack("<I", i * per_session + u) + audio[48:]
            (src / f"{u:04d}.wav").write_bytes(b"not a wav" if broken else unique)
            text = SENTENCES[(i + u) % len(SENTENCES)]
            (lab / f"{u:04d}.txt").write_text(text, encoding="utf-8")
            dialogs.append(
                {"speaker": "A" if u % 2 else "B", "audioPath": f"{rel.as_posix()}/{u:04d}.wav", "text": text}
            )
        speakers = [
            {"id": "A", "type": "상담사1", "gender": "여", "age": "30대", "telephone_network": "8k"},
            {"id": "B", "type": "고객1", "gender": "알수없음", "age": "", "telephone_network": "8k"},
        ]
        session = {
            "dataSet": {"typeInfo": {"category": domain, "subcategory": "x", "speakers": speakers}, "dialogs": dialogs}
        }
        (lab / f"S{i:06d}.json").write_text(json.dumps(session, ensure_ascii=False), encoding="utf-8")
        files += 2 * per_session + 1
    return files


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
