"""The house's one-way rules, read from the code with ``ast``: nothing outside ``tests/`` uses it.

Why: the lab's servers once lived under ``tests/harness``, so ``make demo`` and the bench ran
test code. A grep misses ``import tests`` split over lines and finds ``tests`` in comments;
``ast`` reads exactly the imports, and also catches ``python -m tests...`` in a command list,
which starts test code from the product just as surely.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Not the project's code: environments, caches, build output.
SKIPPED_DIRS = {"__pycache__", "node_modules", "build", "dist", "target"}


def python_files(root: Path, outside: str) -> Iterator[Path]:
    """Every ``.py`` file under ``root`` but the top-level folder ``outside`` and hidden ones."""
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if parts[0] == outside or any(
            part.startswith(".") or part in SKIPPED_DIRS or part.endswith(".egg-info")
            for part in parts[:-1]
        ):
            continue
        yield path


def names_package(module: str | None, package: str) -> bool:
    return module is not None and (module == package or module.startswith(package + "."))


def uses_of(source: str, package: str) -> list[tuple[int, str]]:
    """(line, what) for each import of ``package`` in ``source``, and each command line that
    runs it (``[..., "-m", "package.x", ...]``) or imports it by name (``import_module``)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, f"import {alias.name}")
                for alias in node.names
                if names_package(alias.name, package)
            ]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and names_package(node.module, package):
                found.append((node.lineno, f"from {node.module} import ..."))
        elif isinstance(node, ast.List | ast.Tuple):
            values = [elt.value if isinstance(elt, ast.Constant) else None for elt in node.elts]
            found += [
                (node.lineno, f"-m {module}")
                for flag, module in itertools.pairwise(values)
                if flag == "-m" and isinstance(module, str) and names_package(module, package)
            ]
        elif isinstance(node, ast.Call) and node.args:
            name = node.func.attr if isinstance(node.func, ast.Attribute) else None
            name = node.func.id if isinstance(node.func, ast.Name) else name
            first = node.args[0]
            if (
                name in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and names_package(first.value, package)
            ):
                found.append((node.lineno, f"{name}({first.value!r})"))
    return found


def offences(root: Path, package: str) -> list[str]:
    """``file:line: what`` for every use of ``package`` from outside its own folder."""
    lines = []
    for path in python_files(root, outside=package):
        relative = path.relative_to(root)
        try:
            source = path.read_text(encoding="utf-8")
            uses = uses_of(source, package)
        except (SyntaxError, UnicodeDecodeError) as error:
            lines.append(f"{relative}: unreadable, so unchecked ({error})")
            continue
        lines += [f"{relative}:{line}: {what}" for line, what in uses]
    return lines


def test_nothing_outside_tests_imports_tests() -> None:
    found = offences(REPO, "tests")
    assert not found, (
        "product code must not use tests/ (move what it needs into the product, for a server "
        "into native/servers/):\n" + "\n".join(found)
    )


def test_the_servers_package_stands_on_its_own() -> None:
    """native/servers is used by the bench and the tests without the lab: it imports nothing
    of the rest of native/ (the lab drives it through its command line instead)."""
    found = []
    package = REPO / "native" / "servers"
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules: list[str | None] = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [f"{node.module}.{alias.name}" for alias in node.names]
            found += [
                f"{path.relative_to(REPO)}:{node.lineno}: {module}"
                for module in modules
                if names_package(module, "native") and not names_package(module, "native.servers")
            ]
    assert not found, "native/servers imports the lab:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import tests\n", [(1, "import tests")]),
        ("import os, tests.harness.servers as s\n", [(1, "import tests.harness.servers")]),
        ("x = 1\nfrom tests.harness import servers\n", [(2, "from tests.harness import ...")]),
        ("from tests import (\n    compose_cli,\n)\n", [(1, "from tests import ...")]),
        (
            "def f():\n    from tests.integration import pipeline\n",
            [(2, "from tests.integration import ...")],
        ),
        ('cmd = [sys.executable, "-m", "tests.harness", "up"]\n', [(1, "-m tests.harness")]),
        ('importlib.import_module("tests.soak")\n', [(1, "import_module('tests.soak')")]),
        ("import testsuite\nfrom testing import tests\nfrom . import tests\n", []),
        ('# from tests import x\ns = "tests.harness"\n', []),
    ],
)
def test_the_reader_finds_every_form_of_import(
    source: str, expected: list[tuple[int, str]]
) -> None:
    assert uses_of(source, "tests") == expected


def test_an_offence_names_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "infra.py").write_text("import os\n\nfrom tests.harness import x\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "conftest.py").write_text("from tests.harness import x\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "site.py").write_text("import tests\n")
    assert offences(tmp_path, "tests") == ["bench/infra.py:3: from tests.harness import ..."]
