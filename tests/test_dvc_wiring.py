"""dvc.yaml describes the pipeline completely: each stage depends on every module its script
imports, and paths live in one place (params.yaml's `paths`), read by DVC and the stages alike."""

import ast
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import DVC, REPO, copy_project, dvc, dvc_env, git, stages_run
from whisper_ko.cli import STAGES

SRC = REPO / "src" / "whisper_ko"


def imported_modules(path: Path) -> set[str]:
    """whisper_ko modules `path` imports at run time (not those imported for annotations only), as
    paths under src/whisper_ko without `.py`: `config`, `stages/train`."""
    tree = ast.parse(path.read_text())
    skip = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "whisper_ko":
            package = node.module.split(".")[1:]
            for alias in node.names:  # `from whisper_ko.x import y`: y is a module of package x, or a name in x
                candidate = "/".join([*package, alias.name])
                found.add(candidate if (SRC / f"{candidate}.py").is_file() else "/".join(package))
        elif isinstance(node, ast.Import):
            found |= {"/".join(a.name.split(".")[1:]) for a in node.names if a.name.startswith("whisper_ko.")}
    return found - {""}


def closure(script: Path) -> set[str]:
    modules, todo = set(), imported_modules(script)
    while todo:
        name = todo.pop()
        if name not in modules:
            modules.add(name)
            todo |= imported_modules(SRC / f"{name}.py")
    return modules


def stage_deps(stage: str) -> set[str]:
    """The files a stage's command runs: the command, the stage's module and every module they import."""
    return {f"src/whisper_ko/{m}.py" for m in closure(SRC / "cli.py") | closure(SRC / "stages" / f"{stage}.py")} | {
        "src/whisper_ko/cli.py",
        f"src/whisper_ko/stages/{stage}.py",
    }


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_depends_on_exactly_the_modules_its_command_imports(stage):
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    assert spec["cmd"].split()[:2] == ["whisper-ko", stage]
    listed = {d for d in spec["deps"] if isinstance(d, str) and d.startswith("src/")}
    needed = stage_deps(stage)
    assert not needed - listed, f"dvc.yaml's {stage} misses {sorted(needed - listed)}"
    assert not listed - needed, f"dvc.yaml's {stage} lists {sorted(listed - needed)}, which it does not import"


def test_the_import_graph_has_no_cycles():
    modules = {str(p.relative_to(SRC).with_suffix("")) for p in SRC.rglob("*.py") if p.name != "__init__.py"}
    graph = {m: imported_modules(SRC / f"{m}.py") & modules for m in modules}
    state = {}

    def visit(module, path):
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", f"import cycle: {' → '.join([*path, module])}"
        state[module] = "open"
        for other in sorted(graph[module]):
            visit(other, [*path, module])
        state[module] = "done"

    for module in sorted(modules):
        visit(module, [])


def test_training_follows_the_scoring_code_it_selects_checkpoints_with():
    assert "text" in closure(SRC / "stages/train.py")  # no-space CER picks the best checkpoint


@pytest.fixture(scope="module")
def ran(tmp_path_factory, reproduced_pipeline):
    root = copy_project(reproduced_pipeline, tmp_path_factory.mktemp("wiring") / "p")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "ran")
    return root


@pytest.mark.slow
def test_touching_the_text_normaliser_reruns_train(ran):
    text = ran / "src/whisper_ko/text.py"
    original = text.read_text()
    text.write_text(original + "\n# touched\n")
    try:
        changed = set(json.loads(dvc(ran, "status", "--json")))
        assert {"discover", "train", "benchmark"} <= changed
        assert "train" in stages_run(dvc(ran, "repro", "--dry", "train"))
    finally:
        text.write_text(original)


@pytest.mark.parametrize(
    ("module", "stages"),
    [
        ("report.py", {"benchmark"}),
        ("discover_report.py", {"discover"}),
        ("checkpoints.py", {"train"}),
        ("deploy.py", {"export"}),
        ("scoring.py", {"benchmark"}),
    ],
)
@pytest.mark.slow
def test_editing_one_stages_code_leaves_the_others_up_to_date(ran, module, stages):
    """Module lines are DVC's cache lines: the benchmark's table layout never rescans the corpus."""
    path = ran / "src/whisper_ko" / module
    original = path.read_text()
    path.write_text(original + "\n# touched\n")
    try:
        changed = set(json.loads(dvc(ran, "status", "--json"))) - {"corpus"}  # corpus: always changed
        assert changed == stages
    finally:
        path.write_text(original)


@pytest.mark.slow
def test_a_path_changed_in_params_moves_for_dvc_and_the_stages(ran):
    params = yaml.safe_load((ran / "params.yaml").read_text())
    params["paths"].update(reports="out/reports")
    (ran / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    try:
        assert {"check", "discover", "preprocess", "benchmark"} <= set(json.loads(dvc(ran, "status", "--json")))
        dvc(ran, "repro", "discover")  # the stage writes where DVC now expects its outputs
        assert (ran / "out/reports/discover.json").is_file() and (ran / "out/reports/discover.md").is_file()
        lock = yaml.safe_load((ran / "dvc.lock").read_text())["stages"]
        assert {out["path"] for out in lock["discover"]["outs"]} >= {"out/reports/discover.json"}
        params["paths"].update(model="models/tuned")
        (ran / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
        assert {"train", "benchmark"} <= set(json.loads(dvc(ran, "status", "--json")))
    finally:
        git(ran, "checkout", "--", "params.yaml", "dvc.lock")


@pytest.mark.slow
def test_dvc_stops_at_the_check_before_it_removes_a_users_folder(ran):
    """DVC removes a stage's outputs before rerunning it: a paths entry naming a user's folder
    must stop `dvc repro` at the first stage, `check`, before DVC reaches train."""
    mine = ran / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    params = yaml.safe_load((ran / "params.yaml").read_text())
    params["paths"].update(model="mine")
    (ran / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True))
    try:
        proc = subprocess.run([*DVC, "repro"], cwd=ran, capture_output=True, text=True, env=dvc_env())
        assert proc.returncode != 0 and "Running stage 'check'" in proc.stdout
        assert "Error: paths.model mine holds files this pipeline did not write (training_summary.json)" in (
            proc.stdout + proc.stderr
        )
        assert "Running stage 'train'" not in proc.stdout and (mine / "notes.txt").read_text() == "mine\n"
    finally:
        git(ran, "checkout", "--", "params.yaml", "dvc.lock")
