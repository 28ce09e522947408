"""The corpus as DVC sees it: one line per file under discover.root (path, size, modification
time), in walk order. discover depends on this listing instead of on the corpus itself: DVC would
hash every audio byte of a corpus dependency (620 s with a cold state at a million clips), where a
listing costs one directory walk. A file changed, added or removed changes the listing, and so
reruns discover; a corpus copied to another machine (new modification times) reruns it once, and
its manifests come out the same, so nothing after it reruns."""

import json
import os
from pathlib import Path

from whisper_ko.errors import UserError
from whisper_ko.layouts import walk

HEADER = "# whisper-ko corpus listing: path (JSON string), size in bytes, modification time in ns"


def write(root: str | Path, out: str | Path) -> int:
    """Write the listing of `root` (a folder, or a JSONL manifest file) to `out`; returns its files."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"discover.root {root}: no such file or folder")
    loops: list[Path] = []  # symlinked folders leading back up: discover counts them as skips
    files = [root] if root.is_file() else walk(root, loops)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with out.open("w", encoding="utf-8") as f:
        f.write(HEADER + "\n")
        for path in files:
            try:
                stat = os.stat(path)  # follows links: a changed target changes the listing
                size, mtime = stat.st_size, stat.st_mtime_ns
            except OSError:  # gone since the walk saw it: listed as such, discover will say why
                size, mtime = -1, -1
            name = path.name if path == root else path.relative_to(root).as_posix()
            f.write(f"{json.dumps(name, ensure_ascii=False)}\t{size}\t{mtime}\n")
            n += 1
    return n
