"""Batch assembly for training: Whisper's exact 3000-frame input and decoder labels."""

import torch
from torch.utils.data import get_worker_info

from whisper_ko import features
from whisper_ko.dims import N_FRAMES

IGNORE_INDEX = -100  # positions the loss skips


class Collator:
    """Stored records → `{"input_features", "labels"}`.

    Labels are stored as `SOT <|ko|> <|transcribe|> <|notimestamps|> … EOT`. The model builds its
    decoder inputs by shifting labels right and prepending SOT, so the leading SOT is stripped here,
    exactly once: the decoder then sees `SOT <|ko|> …`, never `SOT SOT <|ko|> …`.
    """

    def __init__(self, decoder_start_token_id: int, dtype: torch.dtype = torch.float32):
        self.sot = decoder_start_token_id
        self.dtype = dtype

    def __call__(self, records: list[dict]) -> dict[str, torch.Tensor]:
        targets = [self.strip_sot(list(r["labels"])) for r in records]
        width = max(map(len, targets))
        labels = torch.full((len(targets), width), IGNORE_INDEX, dtype=torch.long)
        for row, ids in zip(labels, targets, strict=True):
            row[: len(ids)] = torch.tensor(ids, dtype=torch.long)
        return {"input_features": self.pad_batch(records), "labels": labels}

    def pad_batch(self, records: list[dict]) -> torch.Tensor:
        shape = (len(records), records[0]["input_features"].shape[0], N_FRAMES)
        out = torch.empty(shape, dtype=self.dtype)
        if get_worker_info() is not None:
            # In a DataLoader worker, write the batch into shared memory: it then reaches the
            # trainer without another copy (as torch's default collate does).
            out.share_memory_()
        padded = out if self.dtype == torch.float32 else torch.empty(shape)
        for row, record in zip(padded.numpy(), records, strict=True):
            features.pad(record["input_features"], out=row)
        if padded is not out:
            out.copy_(padded)
        return out

    def strip_sot(self, ids: list[int]) -> list[int]:
        return ids[1:] if ids and ids[0] == self.sot else ids
