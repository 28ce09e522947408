"""discover, `dvc status` and preprocess on generated AI Hub telephone trees of 100k and 1M distinct
clips, beside the approach before (a forked pool with every row in memory; DVC hashing the corpus).

For each size, in one temporary git + DVC project per approach (the stages and params of this
checkout, or of `--reference`, a git revision, checked out as a worktree):
  - the discover stage alone (`whisper-ko discover`);
  - `dvc repro discover` (ours: the `corpus` listing, then discover), and its overhead beyond the
    stage alone;
  - `dvc status` with a warm DVC state, and with a cold one (DVC_SITE_CACHE_DIR an empty folder, as
    in a fresh clone or a queued experiment's copy);
  - the preprocess stage alone (features of every clip, --model's extractor: the tiny model's), up
    to `--preprocess-max` clips.
Each row gives wall time, CPU seconds of the whole process tree, its peak PSS (memory shared
between processes counted once), the largest single peak RSS, and the bytes the step left on disk.
Both approaches' manifests are compared byte for byte. Per-clip costs and a linear extrapolation to
5M clips (labelled as such) follow.

    python benchmarks/scale.py --sizes 100000,1000000 --workers 2
"""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import click
import yaml

from whisper_ko.layouts import files
from whisper_ko_fixtures.telephone_tree import generate_tree

REPO = Path(__file__).resolve().parents[1]
FIVE_MILLION = 5_000_000
STEP_S = 0.2  # how often the process tree is sampled


# ---------------------------------------------------------------- measuring a process tree


def _descendants(pid: int) -> list[int]:
    out = [pid]
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    out += _descendants(int(child))
    except OSError:
        pass
    return out


def _read(pid: int) -> tuple[int, int, float] | None:
    """(PSS bytes, RSS bytes, CPU seconds) of one process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = {line.split(":")[0]: line.split()[1] for line in f if ":" in line}
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return int(fields.get("Pss", 0)) * 1024, int(fields.get("Rss", 0)) * 1024, cpu


def measure(command: list[str], cwd: Path, env: dict | None = None, outputs: tuple[Path, ...] = ()) -> dict:
    """Run `command`; its wall time, the tree's CPU time and peak PSS, the largest RSS, and the size of `outputs`."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    log: list[bytes] = []
    reader = threading.Thread(target=lambda: log.extend(proc.stdout), daemon=True)
    reader.start()
    peak_pss = peak_rss = 0
    cpu: dict[int, float] = {}  # pid → its last CPU reading: a process that exits keeps its last
    while proc.poll() is None:
        readings = {pid: r for pid in _descendants(proc.pid) if (r := _read(pid))}
        peak_pss = max(peak_pss, sum(r[0] for r in readings.values()))
        peak_rss = max([peak_rss, *(r[1] for r in readings.values())])
        cpu |= {pid: r[2] for pid, r in readings.items()}
        time.sleep(STEP_S)
    wall = time.perf_counter() - start
    reader.join()
    if proc.returncode:
        raise click.ClickException(f"{' '.join(command)} failed in {cwd}:\n{b''.join(log).decode()[-3000:]}")
    return {
        "wall_s": wall,
        "cpu_s": sum(cpu.values()),
        "pss_mb": peak_pss / 1e6,
        "rss_mb": peak_rss / 1e6,
        "written_mb": sum(_size(path) for path in outputs) / 1e6,
    }


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


# ---------------------------------------------------------------- the projects


def project(root: Path, source: Path, tree: Path, workers: int, model: Path, stages: tuple[str, ...]) -> Path:
    """A git + DVC project of `source`'s stages and library with `stages` of its dvc.yaml (the check
    stage left out: it wants the demo's models), reading `tree`, preprocessing for `model`."""
    root.mkdir(parents=True)
    for name in ("stages", "src"):  # the reference's stage scripts were in stages/
        if (source / name).is_dir():
            shutil.copytree(source / name, root / name)
    pipeline = yaml.safe_load((source / "dvc.yaml").read_text())
    kept = {}
    for name in stages:
        if name in pipeline["stages"]:
            stage = pipeline["stages"][name]
            stage["deps"] = [d for d in stage["deps"] if "check.json" not in str(d)]
            kept[name] = stage
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": kept}, allow_unicode=True, sort_keys=False))
    params = yaml.safe_load((source / "params.yaml").read_text())
    # the generated tree marks no template: val holds out whole sessions
    params["discover"].update(root=str(tree), workers=workers, val_by="session")
    params["preprocess"].update(workers=workers)
    params["model"]["base"] = str(model)
    (root / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False))
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(command, cwd=root, check=True)
    return root


def stage(name: str, source: Path) -> list[str]:
    script = source / "stages" / f"{name}.py"  # the reference's layout; ours: the package's command
    return [
        sys.executable,
        *([str(script)] if script.is_file() else ["-m", "whisper_ko.cli", name]),
        "--params",
        "params.yaml",
    ]


def dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def warm(tree: Path) -> None:
    """Read every file once, so that both approaches start from a warm page cache."""
    for entry in files(str(tree), []):
        with open(entry.path, "rb") as f:
            f.read()


def run_size(
    n: int, tree: Path, work: Path, workers: int, model: Path, reference: Path | None, preprocess_max: int
) -> list[dict]:
    rows = []
    warm(tree)
    approaches = [("whisper_ko", REPO)] + ([("reference", reference)] if reference else [])
    manifests = {}
    for name, source in approaches:
        root = project(work / f"{name}-{n}", source, tree, workers, model, ("corpus", "discover", "preprocess"))
        # this approach's library, also for the stages DVC runs (`python` is this interpreter)
        env = {"PYTHONPATH": str(source / "src"), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        site = {**env, "DVC_SITE_CACHE_DIR": str(root / ".site-cache")}
        outputs = (root / "data/manifests", root / "reports")

        def row(step, result, name=name):
            rows.append({"clips": n, "approach": name, "step": step, **result})

        row("discover stage", measure(stage("discover", source), root, env, outputs=outputs))
        manifests[name] = {p.name: p.read_bytes() for p in (root / "data/manifests").glob("*.jsonl")}
        if name == "reference" and n > 100_000:
            continue  # its DVC steps hash the whole corpus (620 s at 1M): measured at 100k
        alone = rows[-1]["wall_s"]
        repro = measure(dvc("repro", "discover"), root, site, outputs=(*outputs, root / ".dvc/cache"))
        row("dvc repro discover", {**repro, "overhead_s": repro["wall_s"] - alone})
        row("dvc status (warm state)", measure(dvc("status"), root, site))
        # ignore_cleanup_errors: a DVC daemon (analytics) may still be writing there
        with tempfile.TemporaryDirectory(dir=work, ignore_cleanup_errors=True) as cold:
            row("dvc status (cold state)", measure(dvc("status"), root, {**env, "DVC_SITE_CACHE_DIR": cold}))
        if name == "whisper_ko" and n <= preprocess_max:
            features = root / "data/features"
            row("preprocess stage", measure(stage("preprocess", source), root, env, outputs=(features,)))
        shutil.rmtree(root, ignore_errors=True)  # the same daemon may write into root/.site-cache
    if reference:
        same = manifests["whisper_ko"] == manifests["reference"]
        click.echo(f"{n} clips: manifests {'byte-identical' if same else 'DIFFER'} between the approaches")
        if not same:
            raise click.ClickException("the manifests differ from the reference's")
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| clips | approach | step | wall s | CPU s | peak PSS MB (tree) | peak RSS MB (largest) | written MB |"
        " µs/clip | PSS B/clip |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        extra = f" (+{r['overhead_s']:.0f} s over the stage)" if "overhead_s" in r else ""
        lines.append(
            f"| {r['clips']:,} | {r['approach']} | {r['step']}{extra} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
            f"{r['pss_mb']:.0f} | {r['rss_mb']:.0f} | {r['written_mb']:.0f} | {1e6 * r['wall_s'] / r['clips']:.0f} | "
            f"{1e6 * r['pss_mb'] / r['clips']:.0f} |"
        )
    return "\n".join(lines)


def ratios(rows: list[dict]) -> str:
    """Reference over ours, per size and step that both ran."""
    lines = ["| clips | step | wall, reference ÷ ours | peak PSS, reference ÷ ours |", "|---|---|---|---|"]
    ours = {(r["clips"], r["step"]): r for r in rows if r["approach"] == "whisper_ko"}
    for r in rows:
        if r["approach"] == "reference" and (mine := ours.get((r["clips"], r["step"]))):
            wall, pss = r["wall_s"] / mine["wall_s"], r["pss_mb"] / mine["pss_mb"]
            lines.append(f"| {r['clips']:,} | {r['step']} | {wall:.1f}× | {pss:.1f}× |")
    return "\n".join(lines)


def extrapolate(rows: list[dict]) -> str:
    """Per step of ours: the slope between the two largest sizes, carried to 5M (an extrapolation)."""
    lines = ["| step (whisper_ko) | wall s at 5M (extrapolated) | peak PSS GB at 5M (extrapolated) |", "|---|---|---|"]
    ours = [r for r in rows if r["approach"] == "whisper_ko"]
    for step in dict.fromkeys(r["step"] for r in ours):
        points = sorted((r["clips"], r["wall_s"], r["pss_mb"]) for r in ours if r["step"] == step)
        if len(points) < 2:
            continue
        (n0, w0, p0), (n1, w1, p1) = points[-2:]
        scale = (FIVE_MILLION - n1) / (n1 - n0)
        # a cost that does not grow stays where it was measured
        wall, pss = max(w1, w1 + (w1 - w0) * scale), max(p1, p1 + (p1 - p0) * scale)
        lines.append(f"| {step} | {wall:.0f} | {pss / 1e3:.1f} |")
    return "\n".join(lines)


@click.command()
@click.option("--sizes", default="100000,1000000", show_default=True, help="clips per tree, comma-separated")
@click.option("--trees", default="/tmp/whisper-ko-scale", show_default=True, type=click.Path(path_type=Path))
@click.option("--seconds", default=0.5, show_default=True, help="each clip's length (8 kHz, 16-bit)")
@click.option("--workers", default=2, show_default=True)
@click.option("--reference", default="af10c51", show_default=True, help="git revision to compare with ('' for none)")
@click.option("--preprocess-max", default=100_000, show_default=True, help="largest tree preprocess runs on")
@click.option(
    "--model",
    default=REPO / "models/tiny-ko",
    show_default=True,
    type=click.Path(file_okay=False, resolve_path=True, path_type=Path),
    help="the model whose extractor and tokenizer preprocess uses (`make tiny-model`)",
)
def main(sizes, trees, seconds, workers, reference, preprocess_max, model):
    work = Path(tempfile.mkdtemp(prefix="whisper-ko-scale-"))
    worktree = None
    try:
        if reference:
            worktree = work / "reference"
            subprocess.run(["git", "worktree", "add", "-q", "--detach", str(worktree), reference], cwd=REPO, check=True)
        rows = []
        for n in (int(s) for s in sizes.split(",")):
            tree = trees / f"{n}"
            marker = tree / f".generated-{n}-{seconds}"
            if not marker.exists():
                shutil.rmtree(tree, ignore_errors=True)
                start = time.perf_counter()
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(str(generate_tree(tree, n, seconds=seconds)))
                click.echo(f"generated {marker.read_text()} files for {n} clips in {time.perf_counter() - start:.0f} s")
            rows += run_size(n, tree, work, workers, model, worktree, preprocess_max)
            click.echo(table(rows))
        click.echo(f"\n{os.cpu_count()} CPUs, {workers} workers, {seconds}-s clips, warm page cache after generation")
        click.echo(table(rows))
        click.echo("\n" + ratios(rows))
        click.echo("\nLinear in the clips between the two largest sizes, carried to 5M clips (not measured):")
        click.echo(extrapolate(rows))
    finally:
        if worktree:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
