from pathlib import Path

import click

from .corpus import generate
from .speech import EspeakNotFound


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data/sample"),
    show_default=True,
    help="Corpus root to create.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--train",
    "n_train",
    type=int,
    default=400,
    show_default=True,
    help="Good training utterances (broken entries come on top).",
)
@click.option(
    "--val", "n_val", type=int, default=100, show_default=True, help="Validation utterances."
)
@click.option(
    "--workers", type=int, default=None, help="Parallel espeak-ng calls [default: CPU count]."
)
def main(out: Path, seed: int, n_train: int, n_val: int, workers: int | None) -> None:
    """Synthesise the Korean call-centre sample corpus in AI Hub's layout."""
    try:
        info = generate(out, seed=seed, n_train=n_train, n_val=n_val, workers=workers)
    except (EspeakNotFound, FileExistsError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    counts = {split: sum(by_domain.values()) for split, by_domain in info["counts"].items()}
    click.echo(
        f"{out}: {counts}, {len(info['broken'])} broken entries (see {out}/sample_info.json)"
    )


if __name__ == "__main__":
    main()
