"""The default plugins' layout (issue 27): grouped by family, the PPO engine closed (only the ppo stage
imports it), and every module of rlhf_plug_plugins importable from its new place."""

from __future__ import annotations

import ast
import importlib

import pytest
from helpers import REPO

PLUGINS = REPO / "plugins"
FAMILIES = {"stages", "data", "rewards", "objectives", "evaluation", "report", "ppo"}


def module_name(path) -> str:
    parts = path.relative_to(PLUGINS).with_suffix("").parts
    return ".".join(("rlhf_plug_plugins", *parts[:-1], *([] if parts[-1] == "__init__" else parts[-1:])))


def imported_modules(path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import (write rlhf_plug_plugins.… in full)"
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


SOURCES = sorted(PLUGINS.rglob("*.py"))


def test_plugins_are_grouped_by_family():
    top = {p.name for p in PLUGINS.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))}
    assert top == FAMILIES
    assert [p.name for p in PLUGINS.glob("*.py")] == ["__init__.py"], "every module sits in its family's folder"
    for family in FAMILIES:
        doc = ast.get_docstring(ast.parse((PLUGINS / family / "__init__.py").read_text(encoding="utf-8")))
        assert doc and len(doc) > 40, f"plugins/{family}/__init__.py says what lives there"


def test_only_the_ppo_stage_imports_the_ppo_engine():
    outside = [p for p in SOURCES if p.relative_to(PLUGINS).parts[0] != "ppo" and p != PLUGINS / "stages" / "ppo.py"]
    offenders = {str(p.relative_to(REPO)): sorted(m for m in imported_modules(p) if m.startswith("rlhf_plug_plugins.ppo"))
                 for p in outside}
    assert {k: v for k, v in offenders.items() if v} == {}
    assert any(m.startswith("rlhf_plug_plugins.ppo") for m in imported_modules(PLUGINS / "stages" / "ppo.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PLUGINS)))
def test_every_module_imports_from_its_place(path):
    importlib.import_module(module_name(path))
