"""Every quick ``rlhf-plug`` command the README, CONTRIBUTING.md and docs/*.md show in a fenced code block runs
as written and exits 0.

Quick means offline and seconds: ``--help``, ``plugins``, ``recipes`` (with ``--path NAME`` or ``--copy NAME
DEST``), ``validate`` of a bundled recipe (with its ``--set`` overrides), and ``label stats FILE`` where FILE is
in the repository. Lines with a placeholder (``RECIPE``, ``RUN_DIR``, ``FILE``, ``<token>``, ``...``) are
usage, not commands, and are left out; ``run``, ``report`` and sampling with ``label`` are too slow here.
"""

from __future__ import annotations

import re
import shlex

import pytest
from helpers import REPO, cli, write_jsonl

from rlhf_plug.bundled import bundled_recipes

DOC_FILES = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]
#: A fenced block: its language (may be empty) and its body.
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.M | re.S)
#: Blocks that show shell commands (``text`` too: the README's command list).
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console", "text"}
#: A command line, after an optional prompt.
COMMAND = re.compile(r"^\s*(?:\$ )?rlhf-plug (.+)$")
#: What ends a command on its line: a comment, or the description column of a usage list (3+ spaces).
TRAILER = re.compile(r"\s+#\s|\s{3,}")
#: A placeholder: a word in capitals (RECIPE, RUN_DIR, FILE, M), <something>, or an ellipsis.
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z0-9_]*\b|<[^>\s]+>|\.\.\.|…")
BUNDLED = {path.stem for path in bundled_recipes()}
GLOBAL_FLAGS = {"--debug"}


def _words(args: list[str]) -> list[str]:
    """The command's words after global options (``-p MODULE``, ``--debug``)."""
    words, i = [], 0
    while i < len(args):
        if args[i] in ("-p", "--plugin"):
            i += 2
            continue
        if args[i] in GLOBAL_FLAGS:
            i += 1
            continue
        return args[i:]
    return words


def is_quick(args: list[str]) -> bool:
    words = _words(args)
    if not words:
        return False
    if words in (["--help"], ["-h"], ["--version"]):
        return True
    if words[0] in ("plugins", "recipes"):
        return True
    if words[0] == "validate":
        hub_model = any(w.startswith("model=") and "/" in w and not w.startswith(("model=.", "model=/")) for w in words)
        return len(words) > 1 and words[1] in BUNDLED and not hub_model  # a Hub model cannot be checked offline
    return words[:2] == ["label", "stats"] and len(words) > 2


def shell_lines(text: str):
    """(line number, line) of every line in a shell-like fenced block, backslash continuations joined."""
    for fence in FENCE.finditer(text):
        if fence.group(1).lower() not in SHELL_BLOCKS:
            continue
        first = text.count("\n", 0, fence.start(2)) + 1
        pending, start = "", None
        for offset, line in enumerate(fence.group(2).splitlines()):
            if start is None:
                start = first + offset
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            yield start, pending + line
            pending, start = "", None


def doc_commands() -> list[tuple[str, list[str]]]:
    """(``file:line``, args) for each quick command, each distinct command once (where it is first shown)."""
    found: dict[tuple[str, ...], str] = {}
    for path in DOC_FILES:
        page = path.relative_to(REPO).as_posix()
        for number, line in shell_lines(path.read_text(encoding="utf-8")):
            match = COMMAND.match(line)
            if not match:
                continue
            command = TRAILER.split(match.group(1).strip(), maxsplit=1)[0]
            if PLACEHOLDER.search(command):
                continue
            args = shlex.split(command)
            if any(a.startswith("[") or a == "|" for a in args):  # optional parts of a usage line
                continue
            if is_quick(args):
                found.setdefault(tuple(args), f"{page}:{number}")
    return [(where, list(args)) for args, where in found.items()]


COMMANDS = doc_commands()


def test_the_docs_show_quick_commands():
    assert len(COMMANDS) >= 5, COMMANDS  # a handful at least: the test must not pass on nothing
    kinds = {_words(args)[0] for _, args in COMMANDS}
    assert {"--help", "plugins", "recipes", "validate"} <= kinds, kinds


@pytest.mark.parametrize("args", [a for _, a in COMMANDS], ids=[f"{where} {' '.join(a[:2])}" for where, a in COMMANDS])
def test_doc_command_runs(args, tmp_path):
    # what the docs' commands read from the working directory: a rankings file (docs/labelling.md)
    write_jsonl(tmp_path / "rankings.jsonl", [{"prompt": f"q{i}", "completions": ["good", "bad"]} for i in range(20)])
    words = _words(args)
    cwd = tmp_path
    if words[:2] == ["label", "stats"]:
        if not (REPO / words[2]).is_file():
            pytest.skip(f"{words[2]} is not in the repository")
        cwd = REPO
    elif any("../shared/" in a for a in args):
        if not (REPO.parent / "shared" / "data" / "hh-rlhf").is_dir():
            pytest.skip("../shared/data/hh-rlhf is not here")
        cwd = REPO
    env = {"PYTHONPATH": str(REPO / "examples" / "rlhf-plug-example")} if "rlhf_plug_example" in args else {}
    proc = cli(*args, cwd=cwd, **env)
    assert proc.returncode == 0, f"rlhf-plug {shlex.join(args)}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    if words[:2] == ["recipes", "--copy"]:
        assert (cwd / words[3]).is_file(), f"{words[3]} was not written"
