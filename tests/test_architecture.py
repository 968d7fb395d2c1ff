"""The dependency rule (docs/architecture.md), checked from the source text.

What runs on the line never imports the training side: modules in ``inspector/core``, ``inspector/station``,
``inspector/judge``, ``inspector/line`` and ``inspector/plc`` never import torch, torchvision,
``inspector.model`` or ``inspector.calibration``, at any nesting level (a function-local import
counts), relative imports included. The check parses every file with ``ast`` and imports none of
them; a subprocess then imports the daemon for real and looks at ``sys.modules``. (Unit tests:
the subprocesses only import modules, so that what the test process imported does not count.)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "inspector"

GUARDED = ("core", "judge", "line", "plc", "station", "plant")
FORBIDDEN = ("torch", "torchvision", "inspector.model", "inspector.calibration")


def module_name(path: Path) -> str:
    """``inspector/line/daemon.py`` -> ``inspector.line.daemon`` (a package's ``__init__.py`` -> the package)."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def imported_names(source: str, module: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """Every module name that ``source`` (the text of ``module``) may import, with its line:
    ``import a.b``, ``from a import b`` (both ``a`` and ``a.b``), relative imports resolved against
    ``module``'s package, and ``importlib.import_module("x")`` / ``__import__("x")`` with a literal
    name. Imports inside functions, classes and ``if``/``try`` blocks count like top-level ones."""
    package = _package_of(module, is_package)
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 > len(parts) - 1:
                    found.append((node.lineno, "." * node.level + (node.module or "")))  # beyond the top
                    continue
                base = ".".join(parts[: len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def is_forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def violations(source: str, module: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    return sorted({(line, name) for line, name in imported_names(source, module, is_package=is_package)
                   if is_forbidden(name)})


def guarded_files() -> list[Path]:
    return sorted(p for sub in GUARDED for p in (PACKAGE / sub).rglob("*.py"))


def test_every_guarded_package_has_modules():
    for sub in GUARDED:
        assert (PACKAGE / sub / "__init__.py").is_file(), f"inspector/{sub} is not a package"
        assert len(list((PACKAGE / sub).glob("*.py"))) > 1, f"inspector/{sub} has no modules to check"


def test_line_plc_judge_core_never_import_torch_model_or_calibration():
    problems = []
    for path in guarded_files():
        for line, name in violations(path.read_text(), module_name(path), is_package=path.name == "__init__.py"):
            problems.append(f"{path.relative_to(REPO)}:{line}: imports {name}")
    assert not problems, ("the line side (inspector/core, judge, line, plc) must not import torch, torchvision, "
                          "inspector.model or inspector.calibration:\n" + "\n".join(problems))


def test_the_checker_flags_forbidden_imports():
    source = (
        "import os\n"                                        # 1  fine
        "import torch\n"                                     # 2
        "from ..model import x\n"                            # 3
        "from ..engine import open_engine\n"                 # 4  fine
        "from . import wire\n"                               # 5  fine
        "def f():\n"
        "    import torchvision.models as tvm\n"            # 7
        "    from .. import calibration\n"                   # 8
        "    from inspector.model.network import RDConfig\n"  # 9
        "class C:\n"
        "    try:\n"
        "        from inspector.calibration.thresholds import fit_threshold\n"  # 12
        "    except ImportError:\n"
        "        pass\n"
        "import torchmetrics\n"                              # 15 fine: another package
        "import importlib\n"
        "importlib.import_module('torch')\n"                 # 17
    )
    found = violations(source, "inspector.line.example")
    assert {line for line, _ in found} == {2, 3, 7, 8, 9, 12, 17}, found
    assert (3, "inspector.model") in found and (2, "torch") in found and (8, "inspector.calibration") in found
    deeper = violations("from ...model import y\nfrom ..judge import verdict\n", "inspector.line.sub.example")
    assert deeper == [(1, "inspector.model"), (1, "inspector.model.y")]
    # a package's own __init__.py resolves "." to itself
    assert violations("from .. import model\n", "inspector.line", is_package=True) == [(1, "inspector.model")]
    assert violations("from . import model\n", "inspector.line.daemon") == []  # inspector.line.model: no rule


def test_importing_the_daemon_does_not_load_torch():
    proc = subprocess.run([sys.executable, "-c", "import inspector.line.daemon, sys; assert 'torch' not in sys.modules"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_importing_the_line_side_loads_nothing_forbidden():
    """Every module of the guarded packages, imported for real: torch, torchvision, inspector.model and
    inspector.calibration stay out of sys.modules (the static check above says why when this fails)."""
    modules = [module_name(p) for p in guarded_files()]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n"
            "    importlib.import_module(m)\n"
            f"bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in {FORBIDDEN!r}))\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
