"""Log-mel per clip: WhisperFeatureExtractor on the 30 s padded input vs our unpadded `log_mel`.

Same clips, one process, one thread each. Prints clips/s for both, the ratio, stored bytes per
audio-hour (padded fp16 vs unpadded fp16 compressed as in our shards), and the max abs difference
between `pad(log_mel(x))` and the extractor's output.

    python benchmarks/features.py --corpus data/sample --clips 200
"""

import time
from pathlib import Path

import click
import numpy as np
import torch
import zstandard
from transformers import WhisperFeatureExtractor

from whisper_ko import audio, dims, features, shards


def timed(fn, waves) -> tuple[float, list[np.ndarray]]:
    start = time.perf_counter()
    out = [fn(w) for w in waves]
    return time.perf_counter() - start, out


@click.command()
@click.option("--corpus", default="data/sample", show_default=True, type=click.Path(exists=True))
@click.option("--clips", default=200, show_default=True)
@click.option("--n-mels", default=80, show_default=True, type=click.Choice(["80", "128"]))
def main(corpus, clips, n_mels):
    torch.set_num_threads(1)
    n_mels = int(n_mels)
    paths = sorted(Path(corpus).rglob("*.wav"))[: clips * 2]
    waves = []
    for path in paths:
        try:
            wave = audio.load(path)
        except audio.AudioError:
            continue
        if 0 < len(wave) <= 30 * dims.SAMPLE_RATE:
            waves.append(wave)
    waves = waves[:clips]
    hours = sum(map(len, waves)) / dims.SAMPLE_RATE / 3600
    extractor = WhisperFeatureExtractor(feature_size=n_mels)

    def reference(wave):
        return extractor(wave, sampling_rate=dims.SAMPLE_RATE, return_tensors="np").input_features[0]

    ours_s, ours = timed(lambda w: features.log_mel(w, n_mels), waves)
    ref_s, refs = timed(reference, waves)
    diff = max(float(np.abs(features.pad(o) - r).max()) for o, r in zip(ours, refs, strict=True))
    compressor = zstandard.ZstdCompressor(level=shards.ZSTD_LEVEL)
    padded_bytes = sum(r.astype(np.float16).nbytes for r in refs)
    our_bytes = sum(len(compressor.compress(o.astype(np.float16).tobytes())) for o in ours)

    click.echo(f"{len(waves)} clips, {hours * 3600 / len(waves):.2f} s mean, {n_mels} mels, 1 thread")
    click.echo("| approach | clips/s | MB per audio-hour |")
    click.echo("|---|---|---|")
    click.echo(f"| extractor, padded 30 s, fp16 | {len(waves) / ref_s:.1f} | {padded_bytes / hours / 1e6:.1f} |")
    click.echo(
        f"| whisper_ko log_mel, unpadded fp16 + zstd | {len(waves) / ours_s:.1f} | {our_bytes / hours / 1e6:.1f} |"
    )
    click.echo(
        f"speed ratio {ref_s / ours_s:.1f}x, size ratio {padded_bytes / our_bytes:.1f}x, "
        f"max |pad(ours) - extractor| = {diff:.2e}"
    )


if __name__ == "__main__":
    main()
