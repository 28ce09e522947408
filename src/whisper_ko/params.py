"""params.yaml access for the stage scripts (library functions take plain arguments)."""

from pathlib import Path

import yaml


# The `model` section, read by preprocess (the tokenizer and mel size), train and benchmark.
MODEL_KEYS = {"base", "language", "task", "attention"}


class ParamsError(ValueError):
    pass


def load(path: str | Path, *sections: str) -> tuple[dict, ...]:
    """The named sections of a params file; a missing file or section is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    missing = [s for s in sections if not isinstance(params.get(s), dict)]
    if missing:
        raise ParamsError(f"{path}: missing section(s) {', '.join(missing)}")
    return tuple(params[s] for s in sections)


def check_keys(section: str, values: dict, known: set[str]) -> None:
    """Reject typos (`learnig_rate`) before any heavy work instead of silently using a default."""
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParamsError(f"unknown parameter(s) in `{section}`: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
