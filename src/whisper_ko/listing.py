"""The corpus as DVC sees it: one line per file under discover.root (path, size, modification
time), in walk order. discover depends on this listing instead of on the corpus itself: DVC would
hash every audio byte of a corpus dependency (620 s with a cold state at a million clips), where a
listing costs one directory walk. A file changed, added or removed changes the listing, and so
reruns discover; a corpus copied to another machine (new modification times) reruns it once, and
its manifests come out the same, so nothing after it reruns."""

import os
from json.encoder import encode_basestring  # a path as a JSON string: tabs and newlines escaped
from pathlib import Path

from whisper_ko.errors import UserError
from whisper_ko.layouts import files

HEADER = "# whisper-ko corpus listing: path (JSON string), size in bytes, modification time in ns"


def write(root: str | Path, out: str | Path) -> int:
    """Write the listing of `root` (a folder, or a JSONL manifest file) to `out`; returns its files."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"discover.root {root}: no such file or folder")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if root.is_file():
        stat = root.stat()
        entries = [(root.name, stat)]
    else:
        loops: list[Path] = []  # symlinked folders leading back up: discover counts them as skips
        start = len(str(root)) + 1
        entries = ((entry.path[start:], _stat(entry)) for entry in files(str(root), loops))
    n = 0
    with out.open("w", encoding="utf-8") as f:
        f.write(HEADER + "\n")
        for name, stat in entries:
            size, mtime = (stat.st_size, stat.st_mtime_ns) if stat else (-1, -1)
            f.write(f"{encode_basestring(name)}\t{size}\t{mtime}\n")
            n += 1
    return n


def _stat(entry: os.DirEntry) -> os.stat_result | None:
    """Links followed: a changed target changes the listing. None for a file gone since the walk saw it."""
    try:
        return entry.stat()
    except OSError:
        return None
