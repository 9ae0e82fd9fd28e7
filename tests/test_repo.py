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
