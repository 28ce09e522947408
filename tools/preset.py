"""Apply a preset (presets/*.yaml: the `model`, `train` and `benchmark` sections sized for one
Whisper on 80 GB GPUs) to a params file: those sections are replaced as written in the preset,
comments included; every other section (the corpus, text and preprocessing settings) stays.

    make preset PRESET=whisper-large-v3      # = python tools/preset.py presets/whisper-large-v3.yaml params.yaml
"""

import re
from pathlib import Path

import click
import yaml

# A top-level key starts a section; its block runs to the next one.
_SECTION = re.compile(r"^([A-Za-z_][\w-]*):", re.MULTILINE)


def sections(text: str) -> dict[str, str]:
    """Each top-level section's block of text, in order (text before the first is kept under "")."""
    starts = [(m.start(), m.group(1)) for m in _SECTION.finditer(text)]
    blocks = {"": text[: starts[0][0]] if starts else text}
    for (start, name), (end, _) in zip(starts, [*starts[1:], (len(text), "")], strict=True):
        blocks[name] = text[start:end]
    return blocks


def apply(params_text: str, preset_text: str) -> str:
    """`params_text` with the sections of `preset_text` in place of its own."""
    params, preset = sections(params_text), sections(preset_text)
    unknown = sorted(set(preset) - set(params) - {""})
    if unknown:
        raise ValueError(f"the preset has sections the params file lacks: {', '.join(unknown)}")
    blocks = [preset.get(name, block) if name else block for name, block in params.items()]
    merged = "\n\n".join(block.strip("\n") for block in blocks if block.strip()) + "\n"
    yaml.safe_load(merged)  # still one valid document
    return merged


@click.command()
@click.argument("preset", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("params_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def main(preset: Path, params_file: Path):
    """Replace PARAMS_FILE's sections with those of PRESET."""
    try:
        merged = apply(params_file.read_text(encoding="utf-8"), preset.read_text(encoding="utf-8"))
    except ValueError as err:
        raise click.ClickException(f"{preset}: {err}") from err
    params_file.write_text(merged, encoding="utf-8")
    names = [name for name in sections(preset.read_text(encoding="utf-8")) if name]
    click.echo(f"{params_file}: {', '.join(names)} from {preset}; set discover.root to your corpus")


if __name__ == "__main__":
    main()
