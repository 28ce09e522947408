"""Length grouping (train.group_by_length) through the Trainer's public sampling: batches of similar
label length, drawn again each epoch, the lengths read from the shard index, never from the records."""

import numpy as np
import torch
from transformers import Trainer, TrainingArguments

from whisper_ko.config import Train
from whisper_ko.training import LengthGrouped, trainer_kwargs


class Records:
    """A ShardSet stand-in: label lengths from its index, records counted as they are read."""

    def __init__(self, lengths):
        self.lengths, self.reads = np.asarray(lengths), 0

    def label_lengths(self):
        return self.lengths

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, i):
        self.reads += 1
        return {"i": i, "length": int(self.lengths[i])}


LENGTHS = np.random.default_rng(0).integers(5, 200, size=96)


def test_batches_hold_similar_lengths_and_each_epoch_draws_its_own_order():
    records = Records(LENGTHS)
    grouped = LengthGrouped(records, batch_size=4, seed=3)
    assert records.reads == 0  # the lengths came from the index
    first = grouped.order.tolist()
    assert sorted(first) == list(range(len(LENGTHS)))
    assert LENGTHS[first[0]] == LENGTHS.max()  # transformers' grouping puts the longest batch first
    spread = np.mean([np.ptp(LENGTHS[first[k : k + 4]]) for k in range(0, len(first), 4)])
    shuffled = np.random.default_rng(1).permutation(len(LENGTHS))
    assert spread < 0.5 * np.mean([np.ptp(LENGTHS[shuffled[k : k + 4]]) for k in range(0, len(shuffled), 4)])
    grouped.set_epoch(1)
    second = grouped.order.tolist()
    assert second != first
    grouped.set_epoch(0)
    assert grouped.order.tolist() == first  # seeded: a resumed epoch sees the same order
    assert LengthGrouped(Records(LENGTHS), batch_size=4, seed=3).order.tolist() == first


def test_the_trainer_serves_the_grouped_order_of_each_epoch(tmp_path):
    grouped = LengthGrouped(Records(LENGTHS), batch_size=4, seed=0)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        train_sampling_strategy=trainer_kwargs(Train(group_by_length=True), "", "fp32", False)[
            "train_sampling_strategy"
        ],
        use_cpu=True,
        report_to=[],
        remove_unused_columns=False,
    )
    trainer = Trainer(model=torch.nn.Linear(1, 1), args=args, train_dataset=grouped, data_collator=lambda rows: rows)
    loader = trainer.get_train_dataloader()
    orders = []
    for epoch in (0, 1):
        loader.set_epoch(epoch)  # what the Trainer's loop calls at each epoch
        served = [row["i"] for batch in loader for row in batch]
        assert served == grouped.order.tolist()
        orders.append(served)
    assert orders[0] != orders[1]
