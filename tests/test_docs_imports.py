"""What docs/plugins.md shows a plugin author is public (issue 27): every name its code imports exists and comes
from rlhf_plug, never from the default plugins' internals (rlhf_plug_plugins), and so does every API it names in
the prose as ``module.function(...)``."""

from __future__ import annotations

import ast
import importlib
import re

from helpers import REPO

DOC = (REPO / "docs" / "plugins.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", DOC, re.S)
#: An API named in the prose and meant to be called: `pkg.module.function(` or `pkg.module.Class`
PROSE_CALLS = re.findall(r"`(rlhf_plug\w*(?:\.\w+)+)\(", DOC)


def imports_of(code: str) -> list[tuple[str, str | None]]:
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
    return found


IMPORTS = [pair for block in BLOCKS for pair in imports_of(block) if pair[0].startswith("rlhf_plug")]


def test_the_docs_show_code_that_imports_our_api():
    assert len(BLOCKS) >= 3 and len(IMPORTS) >= 8, (len(BLOCKS), IMPORTS)


def test_every_name_the_docs_import_is_public_and_exists():
    for module, name in IMPORTS:
        assert not module.startswith("rlhf_plug_plugins"), f"docs/plugins.md imports {module}: a default plugin's internals"
        imported = importlib.import_module(module)
        if name is not None:
            assert hasattr(imported, name), f"{module} has no {name}"


def test_every_api_the_prose_calls_is_public_and_exists():
    assert PROSE_CALLS, "the prose names no callable API: the check would be vacuous"
    for dotted in PROSE_CALLS:
        assert not dotted.startswith("rlhf_plug_plugins"), f"docs/plugins.md tells authors to call {dotted}"
        module, _, attribute = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), attribute), dotted
