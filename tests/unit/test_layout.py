"""The package is laid out by stage, as rules/ is, and every import points downward: a module
imports only shared helpers, its own stage, or earlier stages (the workflow layer, which checks
the whole config at parse time, sits on top; the README generator above it). No cycles."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import cuealign

PACKAGE = Path(cuealign.__file__).parent
# lower first; a module may import from its own layer or a lower one
LAYERS = [
    ["cuealign", "cuealign.cache", "cuealign.runlog", "cuealign.shards", "cuealign.render"],
    ["cuealign.corpora"],
    ["cuealign.features"],
    ["cuealign.tokens"],
    ["cuealign.diagnostics"],
    ["cuealign.interventions"],
    ["cuealign.prompts"],
    ["cuealign.models"],
    ["cuealign.analysis"],
    ["cuealign.workflow"],
    ["cuealign.readme"],
]


def modules() -> list[str]:
    return ["cuealign", *(m.name for m in pkgutil.walk_packages(cuealign.__path__, "cuealign."))]


def layer(module: str) -> int:
    """The layer of a module: that of the longest prefix listed (a package's modules share it)."""
    best = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    assert best is not None, f"{module} is in no layer of tests/unit/test_layout.py: add it where it belongs"
    return best[0]


def source(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    return Path(spec.origin)


def imports(module: str) -> set[str]:
    """Every cuealign module ``module`` imports, at the top or inside a function."""
    found = set()
    known = set(modules())
    for node in ast.walk(ast.parse(source(module).read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from cuealign.analysis import intervals` imports the module cuealign.analysis.intervals
            found |= {f"{node.module}.{alias.name}" for alias in node.names} & known
    return {name for name in found if name == "cuealign" or name.startswith("cuealign.")}


def test_every_module_imports():
    for module in modules():
        importlib.import_module(module)


def test_the_package_is_grouped_by_stage():
    top = {p.name for p in PACKAGE.iterdir() if not p.name.startswith(("_", "."))}
    assert {"workflow", "corpora", "models", "analysis"} <= top
    # the stage folders hold what rules/ calls them
    assert {"config", "checks", "folds", "resources"} <= {m.split(".")[-1] for m in modules() if ".workflow." in m}
    assert {"inference", "finetune", "devices", "numerics", "identity", "transformers_alm", "registry"} <= {
        m.split(".")[-1] for m in modules() if ".models." in m
    }
    assert {"answers", "stats", "intervals", "tables", "plots", "provenance"} <= {
        m.split(".")[-1] for m in modules() if ".analysis." in m
    }


def test_imports_point_only_downward_and_make_no_cycle():
    graph = {module: imports(module) - {module} for module in modules()}
    upward = [
        f"{module} (layer {layer(module)}) imports {name} (layer {layer(name)})"
        for module, names in graph.items()
        for name in sorted(names)
        if layer(name) > layer(module)
    ]
    assert not upward, "imports pointing to a later stage:\n" + "\n".join(upward)

    # no cycle, also within a layer (a package's __init__ is imported by its modules: leave out
    # those edges, Python runs the __init__ first and no module imports back into it at load)
    def edges(module):
        return {n for n in graph[module] if not (module.startswith(n + ".") and graph.get(n) is not None)}

    state: dict[str, int] = {}

    def visit(module, path):
        state[module] = 1
        for name in edges(module):
            if name not in graph:
                continue
            assert state.get(name) != 1, "import cycle: " + " -> ".join([*path, module, name])
            if name not in state:
                visit(name, [*path, module])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [])


def test_a_module_of_a_later_stage_is_caught(tmp_path):
    """The check itself: an import of a later stage from an earlier one is found."""
    assert layer("cuealign.models.inference") > layer("cuealign.prompts") > layer("cuealign.corpora.audio")
    assert layer("cuealign.analysis.provenance") > layer("cuealign.models.identity")
    assert "cuealign.models.identity" in imports("cuealign.models.inference")
    assert "cuealign.analysis.intervals" in imports("cuealign.analysis.answers")  # `from cuealign.analysis import`


def test_what_the_snakefile_imports_loads_no_torch():
    """rules/common.smk imports the workflow layer, numerics and model identity when the Snakefile
    is parsed, by every `snakemake` and every cluster job: none of it may pull in torch."""
    code = (
        "import sys\n"
        "import cuealign.workflow.checks, cuealign.workflow.resources, cuealign.workflow.folds\n"
        "import cuealign.models.numerics, cuealign.models.identity, cuealign.corpora, cuealign.prompts\n"
        "import cuealign.analysis.provenance\n"
        "print(sorted(m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_function_of_the_package_is_longer_than_80_lines():
    """One function does one thing (ruff keeps their complexity within 15 and statements within 50,
    pyproject.toml); a class may be longer, its methods may not."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 80:
                long.append(
                    f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
                )
    assert not long, "functions over 80 lines:\n" + "\n".join(long)
