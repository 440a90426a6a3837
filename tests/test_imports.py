"""Every hwnas module imports on its own, and the modules' imports form no cycle.

The cycle check reads every ``import`` statement with ``ast``, also those inside functions: a
deferred import only hides a cycle until someone moves it to the top of the file."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import hwnas

PACKAGE_DIR = Path(hwnas.__file__).resolve().parent
NOT_IMPORTABLE = {"hwnas.__main__"}  # runs the CLI when imported


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package's __init__) for every .py file of hwnas."""
    mods = {}
    for p in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = ["hwnas", *p.relative_to(PACKAGE_DIR).with_suffix("").parts]
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return mods


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_graph(mods: dict[str, tuple[Path, bool]]) -> dict[str, set[str]]:
    """Module -> the hwnas modules it imports anywhere in its file.  ``from X import Y`` is an
    edge to ``X.Y`` when that is a module, else to ``X``."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, (path, is_pkg) in mods.items():
        here = mod.split(".") if is_pkg else mod.split(".")[:-1]
        tree = ast.parse(path.read_text(), str(path))
        typing_only = {id(n) for b in ast.walk(tree) if isinstance(b, ast.If) and _is_type_checking(b.test)
                       for stmt in b.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:  # ``if TYPE_CHECKING:`` imports never run
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            graph[mod].update(t for t in targets if t in mods and t != mod)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_cycle():
    """The checker itself: a deferred back-import is a cycle, a chain is not."""
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_graph_reads_relative_and_deferred_imports():
    g = import_graph(_modules())
    assert "hwnas.predictors.registry" in g["hwnas.predictors.saved"]  # from .registry import ...
    assert "hwnas.profile" in g["hwnas.profile.fewshot"]  # `from . import Profile` inside a function
    assert "hwnas.profile.fewshot" in g["hwnas.predictors"]  # deferred, in train_all


def test_no_import_cycles():
    found = cycles(import_graph(_modules()))
    assert not found, "import cycles among hwnas modules: " + "; ".join(" <-> ".join(c) for c in found)


@pytest.mark.slow  # 4-7 s: in CI's slow step, keeping the README's test command under 8 minutes
def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(set(_modules()) - NOT_IMPORTABLE)
    code = ("import importlib, json, sys\n"
            "bad = {}\n"
            "for name in json.loads(sys.argv[1]):\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except Exception as e:\n"
            "        bad[name] = f'{type(e).__name__}: {e}'\n"
            "print(json.dumps(bad))\n")
    r = subprocess.run([sys.executable, "-c", code, json.dumps(names)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {}
    assert {"hwnas.cli", "hwnas.predictors.saved", "hwnas.search.output"} <= set(names)
