"""Write docs/params.md, the reference of every params.yaml setting, from the schemas in
src/whisper_ko/config.py (their fields' types, defaults, constraints and descriptions): one section
per params.yaml section, a table per group of settings. tests/test_config.py keeps it in step.

    python tools/params_doc.py
"""

import types
from pathlib import Path
from typing import Annotated, Literal, Union, get_args, get_origin

import annotated_types
import click
from pydantic.fields import FieldInfo

from whisper_ko.config import SECTIONS, Settings

OUT = Path(__file__).resolve().parents[1] / "docs" / "params.md"
HEADER = """# params.yaml, setting by setting

Every setting the stages read, with its type, default and meaning: generated from the schemas in
[src/whisper_ko/config.py](../src/whisper_ko/config.py) by `python tools/params_doc.py` (a test
fails when this file is out of date). A setting left out of params.yaml takes its default; a value
of another type (a string for a number, a number for true or false), an unknown key or one out of
range stops the stage before it reads or writes anything, with one line naming the setting.
params.yaml itself holds the values of this project's demo.
"""

_BOUNDS = {
    annotated_types.Ge: ("≥", "ge"),
    annotated_types.Gt: (">", "gt"),
    annotated_types.Le: ("≤", "le"),
    annotated_types.Lt: ("<", "lt"),
}


def render() -> str:
    """docs/params.md's text."""
    parts = [HEADER]
    for name, cls in SECTIONS.items():
        parts.append(f"## {name}\n")
        parts.extend(_tables(cls))
    return "\n".join(parts)


def _tables(cls: type[Settings]) -> list[str]:
    """`cls`'s table, then those of its groups of settings (their own headings)."""
    rows = ["| name | type | default | description |", "|---|---|---|---|"]
    groups = []
    for name, info in cls.model_fields.items():
        if _group(info.annotation):
            groups.append(info.annotation)
        cells = [f"`{name}`", _kind(info.annotation, info.metadata), _default(info), info.description or ""]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    out = [_docstring(cls) + "\n", "\n".join(rows) + "\n"]
    for group in groups:
        out += [f"### {group.where}\n", *_tables(group)]
    return out


def _group(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Settings)


def _docstring(cls: type) -> str:
    return " ".join((cls.__doc__ or "").split())


def _kind(annotation, metadata=()) -> str:
    """The type as params.yaml spells its values, with its constraints."""
    if get_origin(annotation) is Annotated:  # an item's type with its own constraints
        inner, *extra = get_args(annotation)
        return f"({_kind(inner, [m for field in extra if isinstance(field, FieldInfo) for m in field.metadata])})"
    if get_origin(annotation) in (Union, types.UnionType):
        kinds = [_kind(arg, metadata) for arg in get_args(annotation) if arg is not type(None)]
        return ", or ".join(kinds) + ", or null" if type(None) in get_args(annotation) else " or ".join(kinds)
    if get_origin(annotation) is Literal:
        return " or ".join(f"`{choice}`" for choice in get_args(annotation))
    if _group(annotation):
        return f"settings ([{annotation.where}](#{annotation.where.replace('.', '')}))"
    if get_origin(annotation) is list:
        return f"list of {_kind(get_args(annotation)[0])}{_length(metadata)}"
    if get_origin(annotation) is dict:
        key, value = get_args(annotation)
        return f"mapping of {_kind(key)} to {_kind(value)}"
    word = {bool: "true or false", int: "integer", float: "number", str: "string"}[annotation]
    bounds = [
        f"{_BOUNDS[type(m)][0]} {_value(getattr(m, _BOUNDS[type(m)][1]))}" for m in metadata if type(m) in _BOUNDS
    ]
    length = _length(metadata) if annotation is str else ""
    return f"{word}{' ' + ', '.join(bounds) if bounds else ''}{length}"


def _length(metadata) -> str:
    low = next((m.min_length for m in metadata if isinstance(m, annotated_types.MinLen)), None)
    high = next((m.max_length for m in metadata if isinstance(m, annotated_types.MaxLen)), None)
    if low is not None and low == high:
        return f", {low} items"
    if low == 1 and high is None:
        return ", not empty"
    return f", at least {low}" if low is not None else ""


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    return "see below" if isinstance(value, Settings) else f"`{_value(value)}`"


def _value(value) -> str:
    """`value` as params.yaml writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    return str(value)


@click.command()
def main():
    """Write docs/params.md from the schemas."""
    OUT.write_text(render(), encoding="utf-8")
    click.echo(f"wrote {OUT}")


if __name__ == "__main__":
    main()
