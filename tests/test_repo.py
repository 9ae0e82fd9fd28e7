"""The repository keeps its promises: CI runs exactly the README's commands."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"Install the development extras.*?```bash\n(.*?)```", text, re.S).group(1)
    return [ln.strip() for ln in block.strip().splitlines()]


def test_ci_runs_the_readme_install_and_test_commands():
    install, test = _readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    pip_part = install.split("&& ", 2)[-1]  # the venv is created by CI itself
    assert pip_part in ci
    assert test in ci.splitlines()


def test_every_cli_module_registers():
    from visiontune.cli.main import COMMAND_MODULES, app

    names = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    for expected in ("models", "predict", "license", "check-preprocess", "diagnose", "compare"):
        assert expected in names
    assert "hub" in COMMAND_MODULES


def test_every_lazy_internal_import_resolves():
    """Function-level ``from visiontune.x import y`` only fails when that code path runs; check them all."""
    import ast
    import importlib

    broken = []
    for path in sorted((ROOT / "src" / "visiontune").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("visiontune")
            ):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if alias.name == "*" or hasattr(module, alias.name):
                    continue
                try:
                    importlib.import_module(f"{node.module}.{alias.name}")
                except ImportError:
                    broken.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.module}.{alias.name}")
    assert not broken, "\n".join(broken)


def _internal_imports():
    """(importer module, imported module, line) for every import statement in src/visiontune —
    module level and inside functions alike; ``if TYPE_CHECKING:`` blocks excluded."""
    import ast

    src = ROOT / "src"
    mods = {}
    for p in (src / "visiontune").rglob("*.py"):
        parts = list(p.relative_to(src).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    out = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text())
        skip = {
            id(x)
            for n in ast.walk(tree)
            if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.dump(n.test)
            for x in ast.walk(n)
        }
        for n in ast.walk(tree):
            if id(n) in skip or not isinstance(n, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(n, ast.Import):
                targets = [a.name for a in n.names]
            else:
                base = n.module
                if n.level:
                    pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (n.level - 1)]
                    base = ".".join(pkg + ([n.module] if n.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in n.names]
            out += [(mod, t, n.lineno, n) for t in targets if t in mods and t != mod]
    return mods, out


def test_every_module_imports_and_the_import_graph_has_no_cycle():
    """Import every module at run time, then build the graph of every internal import (function
    level included: a lazy import hides a cycle, it does not remove it) and fail on a cycle."""
    import importlib
    import sys

    mods, imports = _internal_imports()
    for m in sorted(mods):
        importlib.import_module(m)
    graph = {m: set() for m in mods}
    for a, b, _, _ in imports:
        graph[a].add(b)
    # Tarjan's strongly connected components
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(mods):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_private_name_is_imported_across_packages():
    """``from visiontune.a.b import _x`` (or a ``_private`` module of another package) from outside
    package ``a`` is a defect: make it public or move it. Top-level ``visiontune._*`` modules are
    the package's shared internals (atomic writes, configs, verbs)."""
    import ast

    _, imports = _internal_imports()
    bad = []
    for importer, target, line, node in imports:
        mine = importer.split(".")[1] if importer.count(".") else ""
        theirs = target.split(".")[1] if target.count(".") else ""
        if theirs == mine or (target.count(".") == 1 and theirs.startswith("_")):
            continue
        private_module = any(p.startswith("_") and not p.startswith("__") for p in target.split(".")[2:])
        names = [a.name for a in node.names] if isinstance(node, ast.ImportFrom) else []
        private_names = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if private_module or (private_names and target == (node.module or target)):
            bad.append(f"{importer}:{line} imports {target} {private_names or ''}")
    assert not bad, "\n".join(bad)


# Methods a docstring would only repeat: framework hooks and overrides of torch / Lightning /
# stdlib / LitServe base-class methods (their meaning is the framework's). Dunders are private.
_DOC_EXEMPT_METHODS = {
    "forward",  # torch.nn.Module
    "extra_repr",
    "state_dict",
    "load_state_dict",
    "training_step",  # lightning hooks (and every on_*)
    "validation_step",
    "test_step",
    "predict_step",
    "configure_optimizers",
    "setup",
    "teardown",
    "emit",  # logging.Handler
    "run",  # threading.Thread
    "decode_request",  # litserve.LitAPI
    "encode_response",
    "batch",
    "unbatch",
}
_VALIDATOR_DECORATORS = {"field_validator", "model_validator", "validator", "field_serializer", "model_serializer"}


def test_public_functions_have_docstrings():
    """Every public top-level function / class of a public module (or a name a package exports
    from a private one) and every public method of those classes says what it does."""
    import ast

    pkg = ROOT / "src" / "visiontune"

    exported = set()  # names in a package's __all__ (or its lazy-export table)
    for init in pkg.rglob("__init__.py"):
        for n in ast.parse(init.read_text()).body:
            if isinstance(n, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id in ("__all__", "_LAZY") for t in n.targets
            ):
                exported |= {
                    c.value for c in ast.walk(n.value) if isinstance(c, ast.Constant) and isinstance(c.value, str)
                }

    def decorators(node):
        out = set()
        for d in node.decorator_list:
            d = d.func if isinstance(d, ast.Call) else d
            out.add(d.attr if isinstance(d, ast.Attribute) else getattr(d, "id", ""))
        return out

    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    missing = []
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(ROOT)
        private = any(p.startswith("_") and p != "__init__.py" for p in path.relative_to(pkg).parts)
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, defs) or node.name.startswith("_") or "overload" in decorators(node):
                continue
            if private and node.name not in exported:
                continue
            if ast.get_docstring(node) is None:
                missing.append(f"{rel}:{node.lineno} {node.name}")
            if not isinstance(node, ast.ClassDef):
                continue
            for m in node.body:
                if not isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) or m.name.startswith("_"):
                    continue
                if m.name in _DOC_EXEMPT_METHODS or m.name.startswith("on_"):
                    continue
                if decorators(m) & (_VALIDATOR_DECORATORS | {"overload", "setter"}):
                    continue
                if ast.get_docstring(m) is None:
                    missing.append(f"{rel}:{m.lineno} {node.name}.{m.name}")
    assert not missing, f"{len(missing)} public definitions without a docstring:\n" + "\n".join(missing)
