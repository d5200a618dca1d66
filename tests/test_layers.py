"""The package's shape: every import points down the layers (read from the code with ``ast``),
so inference never depends on training, the contract never on torch, and no cycle is hidden in
a function body."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Top to bottom. A module may import its own package and any package of a lower layer; two
# packages of one layer never import each other.
LAYERS = [
    ["pipeline.cli"],
    ["pipeline.stages"],
    ["pipeline.units"],
    ["pipeline.evaluation"],
    ["pipeline.train"],
    ["pipeline.systems", "submission"],
    ["pipeline.features", "pipeline.pitch", "pipeline.corpus"],
    ["pipeline.contract"],
    ["pipeline.core"],
    ["models"],          # pure tensor code: networks, losses and their data-parallel reductions
]
NO_TORCH = ("pipeline.contract", "submission", "pipeline.core.threads", "pipeline.core.pool", "pipeline.core.io",
            "pipeline.core.config", "pipeline.core.schema", "pipeline.core.overrides", "pipeline.core.stamp",
            "pipeline.core.errors", "pipeline.core.layout", "pipeline.core.audio")


def package_of(module: str) -> str | None:
    for layer in LAYERS:
        for package in layer:
            if module == package or module.startswith(package + "."):
                return package
    return None


def rank_of(package: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if package in layer)


def modules():
    for base in ("pipeline", "submission", "models"):
        for path in sorted((ROOT / base).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
            if name == "pipeline":      # the namespace itself (empty)
                continue
            yield name, ast.parse(path.read_text(encoding="utf-8"), str(path))


def imports(tree: ast.Module):
    """(module imported, line, at module level?) for every import of the file."""
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, id(node) in top
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                # "from pipeline.units import analysis" imports the module pipeline.units.analysis
                yield f"{node.module}.{alias.name}", node.lineno, id(node) in top


ALL = list(modules())


def deferred(tree: ast.Module) -> set[str]:
    """The modules a file declares it imports inside functions, at module level in
    ``DEFERRED_IMPORTS = (...)``: they import torch, which its other callers (``zs2020 evaluate``
    before its ABX scores) should not wait for. Declared, the dependency is not hidden."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DEFERRED_IMPORTS" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


@pytest.mark.parametrize("name, tree", ALL, ids=[name for name, _ in ALL])
def test_imports_point_down(name, tree):
    own = package_of(name)
    assert own is not None, f"{name} belongs to no layer: add its package to LAYERS"
    declared = deferred(tree)
    for target, line, module_level in imports(tree):
        other = package_of(target)
        if other is None or other == own:
            continue
        assert rank_of(other) > rank_of(own), f"{name}:{line} imports {target}, which is not below {own}"
        assert module_level or target.rsplit(".", 1)[0] in declared, \
            f"{name}:{line} imports {target} inside a function (hiding a dependency; DEFERRED_IMPORTS declares one)"
    for module in declared:
        assert any(t.rsplit(".", 1)[0] == module for t, _, top in imports(tree) if not top), \
            f"{name} declares {module} in DEFERRED_IMPORTS but does not import it"


def test_torch_free_modules_stay_torch_free():
    for name, tree in ALL:
        if name.startswith(NO_TORCH):
            torch_imports = [t for t, _, _ in imports(tree) if t.split(".")[0] == "torch"]
            assert not torch_imports, f"{name} imports torch"
            project = [t for t, _, _ in imports(tree) if package_of(t) is not None]
            heavy = [t for t in project if not t.startswith(NO_TORCH)]
            assert not heavy, f"{name} imports {heavy[0]}, which imports torch"


def test_evaluate_starts_scoring_without_torch():
    """``zs2020 evaluate`` reaches its first ABX score without importing torch (1.5 s of a warm
    start-up whose goal is 2 s): only its speech measures, baselines and listening page need it."""
    import subprocess
    import sys
    code = "import sys, pipeline.stages.evaluate, pipeline.evaluation.abx; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'librosa', 'matplotlib'}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", f"importing the evaluate stage loads {done.stdout.strip()}"


def test_every_command_is_a_stage():
    from pipeline.cli import COMMANDS
    for name, (target, _) in COMMANDS.items():
        assert target.startswith("pipeline.stages."), f"zs2020 {name} lives in {target}, not in pipeline.stages"


def test_the_checker_catches_an_upward_import():
    tree = ast.parse("from pipeline.train.vqvae import train\n")
    found = [(target, package_of(target)) for target, _, _ in imports(tree)]
    assert found == [("pipeline.train.vqvae.train", "pipeline.train")]
    assert rank_of("pipeline.train") < rank_of("pipeline.systems")
