"""Import directions (STYLE.md): formulations never import a solver, solvers never import the
network, and verify never imports a solver (it must re-check certificates with numpy only)."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "certify"


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (relative imports resolved to certify.*)."""
    tree = ast.parse(path.read_text())
    out = set()
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(parts[:-node.level])
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{alias.name}" for alias in node.names)
    return out


def _files(sub):
    return sorted((PKG / sub).glob("*.py")) if (PKG / sub).is_dir() else [PKG / sub]


@pytest.mark.parametrize("path", _files("formulate"), ids=lambda p: p.name)
def test_formulations_import_no_solver(path):
    bad = {m for m in imports(path) if m.startswith(("certify.solvers", "highspy", "cvxpy"))}
    assert not bad, bad


@pytest.mark.parametrize("path", _files("solvers"), ids=lambda p: p.name)
def test_solvers_import_no_network(path):
    bad = {m for m in imports(path) if m.startswith(("certify.network", "certify.tangent", "certify.driver",
                                                      "certify.data"))}
    assert not bad, bad


def test_verify_imports_no_solver():
    bad = {m for m in imports(PKG / "verify.py")
           if m.startswith(("certify.solvers", "certify.driver", "highspy", "cvxpy", "scipy.optimize"))}
    assert not bad, bad


def test_only_the_cli_modules_print():
    for path in PKG.rglob("*.py"):
        if path.name.startswith("cli") or path.name in ("demo.py", "batch.py", "progress.py"):
            continue
        tree = ast.parse(path.read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
        assert not calls, f"{path.name} prints"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _graph() -> dict:
    """certify module -> the certify modules it imports (at any depth of the file, lazy imports too)."""
    names = {_module_name(p) for p in PKG.rglob("*.py")}
    graph = {}
    for path in PKG.rglob("*.py"):
        deps = set()
        for m in imports(path):
            while m and m not in names:
                m = m.rpartition(".")[0]
            if m and m != "certify" and m != _module_name(path):
                deps.add(m)
        graph[_module_name(path)] = deps
    return graph


def test_no_import_cycles():
    """STYLE.md: no import circles (lazy imports inside functions count too)."""
    graph = _graph()
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep.startswith(node + ".") or node.startswith(dep + "."):
                continue  # a package and its own submodules
            if state.get(dep) == "open":
                cycle = stack[stack.index(dep):] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


@pytest.mark.parametrize("module", ["certify.secondorder", "certify.polish", "certify.first_order"])
def test_stages_do_not_import_the_driver(module):
    graph = _graph()
    members = [m for m in graph if m == module or m.startswith(module + ".")]
    bad = {m: sorted(d for d in graph[m] if d in ("certify.driver", "certify.cli")) for m in members}
    assert not any(bad.values()), bad
