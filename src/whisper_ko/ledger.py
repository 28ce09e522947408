"""Utterances counted per reason, the first few of each kept as examples: how discover and
preprocess account for what they skip (found = kept + skipped) and for what they kept but flag."""

MAX_EXAMPLES = 5


class Ledger:
    def __init__(self):
        self.entries: dict[str, dict] = {}

    def add(self, reason: str, example: str | None) -> None:
        entry = self.entries.setdefault(reason, {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < MAX_EXAMPLES:
            entry["examples"].append(example)

    def wants(self, reason: str) -> bool:
        """Whether the next `add` for `reason` keeps its example: finding one may cost a read."""
        entry = self.entries.get(reason)
        return entry is None or len(entry["examples"]) < MAX_EXAMPLES

    def total(self) -> int:
        return sum(entry["count"] for entry in self.entries.values())

    def as_dict(self) -> dict:
        return dict(sorted(self.entries.items()))
