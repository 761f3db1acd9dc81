"""The package's import graph has no cycle, counting imports inside functions too.

Every ``import`` and ``from ... import`` statement of every module under
``glitchlib/`` (module level or inside a function) is an edge from that module to
the glitchlib module it names. A package's ``__init__`` is the node of the package;
importing a name from a package counts as importing the package, unless the name is
one of its submodules. A cycle means two modules that cannot be understood (or
moved) apart, and a lazy import inside a function only hides it.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "glitchlib"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the glitchlib modules it imports anywhere in its source."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, is_package, node.level, node.module)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in MODULES else base)
            for target in targets:
                # the deepest glitchlib module named by the target
                while target and target not in MODULES:
                    target = target.rpartition(".")[0]
                if target and target != module:
                    edges.add(target)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first = last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_every_module_imports():
    for module in MODULES:
        importlib.import_module(module)


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    # sub-packages import their own private submodules from __init__; an edge back from a
    # submodule to its package is a cycle like any other
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_settings_is_the_one_leaf_settings_module():
    graph = import_graph()
    assert graph["glitchlib.settings"] <= {"glitchlib._validation"}, graph["glitchlib.settings"]
    assert "glitchlib.config" not in graph, "one settings module: glitchlib.settings"


def test_settings_leaf_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, glitchlib.settings; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False", "glitchlib.settings must not import torch"


def test_every_public_module_is_an_attribute_of_the_package():
    """``import glitchlib as g; g.peers`` works in a fresh interpreter, for every public module."""
    import pkgutil
    import subprocess
    import sys

    import glitchlib

    public = sorted(m.name for m in pkgutil.iter_modules(glitchlib.__path__)
                    if not m.name.startswith("_"))
    assert {"peers", "cost", "signals", "report"} <= set(public)
    code = ("import glitchlib as g; missing = [n for n in %r if not hasattr(g, n)]; print(missing)" % public)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_python_dash_m_glitchlib_is_the_command():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "glitchlib", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "usage: glitchlib" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "glitchlib", "run", "--ratio", "2"], capture_output=True,
                         text=True, cwd=ROOT)
    assert bad.returncode == 2 and "argument --ratio" in bad.stderr and "Traceback" not in bad.stderr
