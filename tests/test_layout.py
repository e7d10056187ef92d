"""The suite's layout: a test imports what it shares from ``tests.support`` (or its own folder's ``support``
package or private ``_x`` modules), never another test module or a conftest. Fixtures reach the tests through a
conftest that re-exports them, so a helper has one home and no test depends on another test's file."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(root: Path, path: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import in ``path``, relative ones resolved; ``from p import m`` yields
    ``p.m`` when ``m`` is a module of the tree, ``p`` when it is a name defined in ``p``."""
    name = _module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            subs = [f"{target}.{alias.name}" for alias in node.names]
            modules = [sub for sub in subs if _exists(root, sub)]
            if len(modules) < len(subs):  # a name defined in ``target`` itself
                yield node.lineno, target
            for sub in modules:
                yield node.lineno, sub


def _exists(root: Path, module: str) -> bool:
    path = root.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _allowed(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported`` (both modules of the tests tree), or None if it may."""
    last = imported.rpartition(".")[2]
    if last == "conftest":
        return "a conftest (its fixtures reach the tests by themselves; helpers belong in tests/support)"
    if last.startswith("test_"):
        return "another test module (move what is shared into tests/support)"
    if imported == "tests.support" or imported.startswith("tests.support."):
        return None
    folder = importer.rpartition(".")[0]
    own = imported.removeprefix(f"{folder}.")
    if imported != own and (own == "support" or own.startswith("support.") or own.startswith("_")):
        return None  # the folder's own support package or private helper (a subprocess script, a served app)
    if importer.startswith(f"{imported}.") or imported.startswith(f"{importer}."):
        return None  # a package and its own modules
    return "a helper outside tests/support and outside the importer's folder"


def layout_violations(root: Path) -> list[str]:
    """Every import of the ``tests`` tree under ``root`` that breaks the layout rules, as ``file:line: why``."""
    found: list[str] = []
    for path in sorted((root / "tests").rglob("*.py")):
        importer = _module_name(root, path)
        for line, imported in _imported(root, path):
            if imported != "tests" and not imported.startswith("tests."):
                continue
            why = _allowed(importer, imported)
            if why is not None:
                found.append(f"{path.relative_to(root)}:{line}: imports {imported}, {why}")
    return found


def test_no_test_imports_another_test_module_or_a_conftest() -> None:
    assert layout_violations(ROOT) == []


def test_the_rule_catches_each_kind_of_import(tmp_path: Path) -> None:
    files = {
        "tests/__init__.py": "",
        "tests/conftest.py": "",
        "tests/support/__init__.py": "",
        "tests/support/helpers.py": "",
        "tests/a/__init__.py": "",
        "tests/a/conftest.py": "X = 1\n",
        "tests/a/test_one.py": "def shared() -> None: ...\n",
        "tests/a/_child.py": "",
        "tests/a/helpers.py": "",
        "tests/b/__init__.py": "",
        "tests/b/test_two.py": (
            "from tests.support.helpers import *\n"  # fine
            "from tests.a.test_one import shared\n"  # a test module
            "from tests.a.conftest import X\n"  # a conftest
            "from tests import conftest\n"  # the root conftest, as a name
            "def f() -> None:\n    from tests.a import helpers\n"  # another folder's helper, nested
        ),
        "tests/a/test_three.py": "from . import _child\nfrom .conftest import X\nfrom .test_one import shared\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = layout_violations(tmp_path)
    assert [f.split(": imports ")[0] + " " + f.split(": imports ")[1].split(",")[0] for f in found] == [
        "tests/a/test_three.py:2 tests.a.conftest",
        "tests/a/test_three.py:3 tests.a.test_one",
        "tests/b/test_two.py:2 tests.a.test_one",
        "tests/b/test_two.py:3 tests.a.conftest",
        "tests/b/test_two.py:4 tests.conftest",
        "tests/b/test_two.py:6 tests.a.helpers",
    ]
