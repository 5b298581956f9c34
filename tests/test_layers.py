"""The house rules, checked on the source: fvcli's packages import only downward, and no modules import in a cycle.

`LAYERS` is the one place the order of the stages is written (docs/guide/architecture.md explains it): a module may
import from its own stage or from any stage below it, never from one above. Every import counts -- at the top of a
module, inside a function, or under `if TYPE_CHECKING:` -- because each is a dependency a reader has to hold in their
head. The check reads the AST only (no imports run), so it costs milliseconds.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fvcli"

# top to bottom: commands -> the Python API -> jobs -> rendering -> what one render is made of -> files and errors
LAYERS: list[tuple[str, ...]] = [
    ("entry", "__main__"),  # the `fv` program: signal handling first, then the command line
    ("cli",),  # the `fv` command line (Typer, thin)
    ("api",),  # the Python API: fvcli.render, fvcli.load_model, fvcli.make_recipe
    ("article",),  # `fv article`: the Distill article's figures
    ("figures",),  # appendix panels, interpolations, the recipe-quality table
    ("concepts",),  # `fv concepts`: directions factorized from a folder's activations (reads it as examples does)
    ("circuits",),  # each unit's strongest inputs (expanded weights, attribution) and `fv circuit`'s figures
    ("examples",),  # dataset examples over an image folder
    ("sweep",),  # every unit of some layers, sharded and resumable
    ("budget",),  # deadlines and budgets: the best measured schedule that fits the time, timed on this machine
    ("gallery",),  # the static HTML site of a sweep
    ("runner",),  # units -> batches -> pictures and records
    ("units",),  # unit strings and objective expressions -> typed units
    ("recipe",),  # YAML and --set -> a validated Recipe
    ("optvis",),  # params, transforms, objectives, the optimization loop
    ("models",),  # registry, weights, layer catalog, activation capture
    ("outputs",),  # atomic files, PNGs, grids, JSON, versions
    ("errors", "_version", "signals"),  # the FvError family; the version string; SIGINT / SIGTERM handling
]
RANK = {stage: i for i, layer in enumerate(LAYERS) for stage in layer}


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PACKAGE.rglob("*.py"):
        rel = p.relative_to(PACKAGE.parent).with_suffix("")
        mods[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = p
    return mods


def _edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the fvcli modules it imports (a name imported from a package counts as the package)."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        base = m.split(".") if p.name == "__init__.py" else m.split(".")[:-1]
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mod = ".".join(base[: len(base) - node.level + 1] + [node.module or ""]).strip(".") if node.level \
                    else node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t.startswith("fvcli") and t != m and not (m.startswith(t + ".") and t != "fvcli"):
                    edges[m].add(t)
    return edges


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "fvcli"


def test_every_stage_is_placed_in_a_layer():
    stages = {_stage(m) for m in _modules()} - {"fvcli"}
    assert stages <= set(RANK), f"stages missing from LAYERS: {sorted(stages - set(RANK))}"


def test_imports_only_go_downward():
    mods = _modules()
    upward = [f"{a} -> {b}" for a, targets in _edges(mods).items() for b in targets
              if _stage(a) != "fvcli" and RANK[_stage(b) if _stage(b) != "fvcli" else "cli"] < RANK[_stage(a)]]
    assert not upward, "imports that run upward against LAYERS:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    edges = _edges(_modules())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_an_upward_import_and_a_cycle(tmp_path, monkeypatch):
    """The rules above can fail: a fake package with one upward import and one cycle is caught by both."""
    fake = tmp_path / "fvcli"
    for rel, text in {"__init__.py": "", "errors.py": "from .sweep import run\n",
                      "sweep/__init__.py": "", "sweep/run.py": "from .plan import x\n",
                      "sweep/plan.py": "from .run import y\n"}.items():
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    edges = _edges(_modules())
    assert "fvcli.sweep.run" in edges["fvcli.errors"]
    assert "fvcli.sweep.plan" in edges["fvcli.sweep.run"] and "fvcli.sweep.run" in edges["fvcli.sweep.plan"]
    try:
        test_imports_only_go_downward()
    except AssertionError as exc:
        assert "fvcli.errors -> fvcli.sweep.run" in str(exc)
    else:
        raise AssertionError("the upward import was not caught")
    try:
        test_no_import_cycles()
    except AssertionError as exc:
        assert "fvcli.sweep.plan <-> fvcli.sweep.run" in str(exc)
    else:
        raise AssertionError("the cycle was not caught")
