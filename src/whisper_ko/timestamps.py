"""Segment timestamps: where a timestamped decode puts each utterance of a window, scored against
the boundaries a packed window's labels know (`labels.window_ids`)."""

from collections.abc import Sequence

import numpy as np

from whisper_ko.dims import TIME_PRECISION


def segments(ids: Sequence[int], timestamp_begin: int, eot: int) -> list[tuple[float, float]]:
    """(start, end) in seconds of each segment of a token sequence: text between two timestamps
    (`<|0.00|> text <|4.52|><|4.80|> text <|9.10|>`). Special tokens other than timestamps are passed over."""
    found, start, text = [], None, False
    for token in ids:
        if token >= timestamp_begin:
            seconds = (token - timestamp_begin) * TIME_PRECISION
            if start is not None and text:
                found.append((start, seconds))
                start = None
            else:  # the first, or the later of two in a row: it opens the next segment
                start = seconds
            text = False
        elif token < eot:
            text = True
    return found


def boundary_errors(reference: Sequence[tuple[float, float]], predicted: Sequence[tuple[float, float]]) -> list[float]:
    """For each reference boundary (every start and end), the distance in seconds to the nearest
    predicted boundary; no predicted segment gives no distance (counted apart, as windows without
    timestamps)."""
    ends = np.array([t for span in predicted for t in span])
    if not len(ends):
        return []
    return [float(np.abs(ends - t).min()) for span in reference for t in span]
