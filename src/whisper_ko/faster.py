"""CTranslate2 models decoded for the benchmark as faster-whisper deploys them (`whisper_ko.deploy`
exports them), behind the `prepare`/`decode` interface of `inference.open_model`."""

from collections import Counter
from dataclasses import dataclass

import numpy as np

from whisper_ko import dims, long_form


@dataclass
class Clips:
    """The audio of one batch, read, ready for `FasterWhisper.decode`."""

    size: int
    audio: list[np.ndarray]  # 16 kHz mono float32, of the positions in `ok`
    ok: list[int]
    errors: dict[int, str]  # position → why its audio could not be read


class FasterWhisper:
    """A CTranslate2 model decoded as faster-whisper deploys it: its feature extractor, its
    pipelines, its defaults otherwise; language, task and `num_beams` beams set. Audio is read by
    the code that reads it for the transformers models, so that reading and resampling (which a
    deployment does its own way) never count as a difference between the two.

    Utterances without loop guards go through the batched pipeline (no VAD, no timestamps, each
    clip its own chunk); with them, through `transcribe`, one clip at a time, since the batched
    pipeline decodes at the first temperature only. Calls go through `transcribe` (sequential
    windows with timestamps) or the batched pipeline with its bundled VAD."""

    attention = "ctranslate2"

    def __init__(self, path: str, device: str):
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        cuda = device.startswith("cuda")
        self.model = WhisperModel(
            path,
            device="cuda" if cuda else "cpu",
            device_index=int(device.split(":")[1]) if cuda else 0,
            compute_type="default",  # the type it was exported in, or the nearest this device runs
            cpu_threads=1,  # one worker per core, as for transformers models
        )
        self.pipeline = BatchedInferencePipeline(self.model)
        self.dtype = self.model.model.compute_type

    def prepare(self, sources: list, decoding) -> Clips:
        return Clips(len(sources), *long_form.read_all(sources))

    def decode(self, batch: Clips, decoding) -> list:
        import ctranslate2

        outputs: list = [None] * batch.size
        if not batch.audio:
            return outputs
        ctranslate2.set_random_seed(decoding.seed)  # sampling at a fallback temperature
        if decoding.method == "short" and decoding.guards is None:
            found = self.batched(batch.audio, decoding)
        elif decoding.method == "short":
            found = [" ".join(s.text.strip() for s in self.transcribe(clip, decoding)) for clip in batch.audio]
        else:
            found = [self.call(clip, decoding) for clip in batch.audio]
        for i, out in zip(batch.ok, found, strict=True):
            outputs[i] = out
        return outputs

    def batched(self, clips: list[np.ndarray], decoding) -> list[str]:
        """One pass of the batched pipeline over the clips laid end to end, each clip its own chunk
        (clip_timestamps): faster-whisper batches the chunks of one audio, not several files."""
        ends = np.cumsum([len(clip) for clip in clips]) / dims.SAMPLE_RATE
        spans = [{"start": float(start), "end": float(end)} for start, end in zip([0.0, *ends[:-1]], ends, strict=True)]
        segments, _ = self.pipeline.transcribe(
            np.concatenate(clips),
            without_timestamps=True,
            vad_filter=False,
            clip_timestamps=spans,
            batch_size=len(spans),
            **_asked(decoding),
        )
        return [segment.text.strip() for segment in segments]  # one segment per chunk without timestamps

    def transcribe(self, clip: np.ndarray, decoding) -> list:
        """faster-whisper's sequential `transcribe` with the loop guards: an utterance in one window
        without timestamps, or a call in windows moved along by its timestamps."""
        guards, call = decoding.guards, decoding.method == "sequential"
        thresholds = {"compression_ratio_threshold": None, "log_prob_threshold": None, "no_speech_threshold": None}
        if guards:
            thresholds = {
                "compression_ratio_threshold": guards.compression_ratio_threshold,
                "log_prob_threshold": guards.logprob_threshold,
                "no_speech_threshold": guards.no_speech_threshold if call else None,  # an utterance is never skipped
            }
        condition = decoding.condition_on_prev_tokens if call else False  # None: faster-whisper's own default
        segments, _ = self.model.transcribe(
            clip,
            vad_filter=False,
            without_timestamps=not call,
            temperature=list(guards.temperatures) if guards else 0.0,
            **thresholds,
            **({} if condition is None else {"condition_on_previous_text": condition}),
            **_asked(decoding),
        )
        return list(segments)

    def call(self, clip: np.ndarray, decoding) -> dict:
        if decoding.method == "vad":
            segments, _ = self.pipeline.transcribe(clip, batch_size=decoding.vad_batch_size, **_asked(decoding))
            segments = list(segments)
        else:
            segments = self.transcribe(clip, decoding)
        windows = Counter()  # tokens per window: its segments share its seek, their tokens include the timestamps
        for s in segments:
            windows[s.seek] += len(s.tokens)
        return long_form.output(
            [(float(s.start), float(s.end), s.text.strip()) for s in segments],
            sum(count >= decoding.max_new_tokens for count in windows.values()),
            sum((s.temperature or 0.0) > 0 for s in segments),
        )


def _asked(decoding) -> dict:
    """What every faster-whisper call takes from the benchmark's decoding settings."""
    return {
        "language": decoding.language,
        "task": decoding.task,
        "beam_size": decoding.num_beams,
        "max_new_tokens": decoding.max_new_tokens,
    }
