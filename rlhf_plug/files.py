"""Writing outputs so that nobody sees half of one: write under a temporary name, then rename into place."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name next to ``path`` to write to; renamed to ``path`` if the block succeeds, removed if it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def nearest_existing(path: str | Path) -> Path:
    """``path`` or its nearest parent that exists (where a folder about to be made would live)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def remove_tree(path: str | Path) -> None:
    """Remove a folder we wrote, quietly if it is missing. A symbolic link is removed as a link: nothing is
    ever deleted in the folder it points to (a user may link a run or stage folder to another disk)."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def replace_dir(src: Path, dst: Path) -> None:
    """Swap the folder ``src`` into ``dst`` (no ``src``: ``dst`` is removed); an older ``dst`` goes only after the swap.

    A ``dst`` that is a symbolic link is replaced as a link (the folder it points to is left as it is).
    """
    old = dst.with_name(f".{dst.name}.old")
    remove_tree(old)
    if dst.exists() or dst.is_symlink():
        dst.rename(old)
    if src.exists():
        src.rename(dst)
    remove_tree(old)


def repair_last_line(path: str | Path) -> int:
    """Repair the last line of an append-only JSON Lines file after a crash; returns the bytes removed.

    A last line without its newline that is not valid JSON is a write that was cut off: it is
    removed. One that is valid (e.g. edited by hand) gets its newline.
    """
    import json

    path = Path(path)
    data = path.read_bytes()
    tail = data[data.rfind(b"\n") + 1:]  # b"" when the file ends with a newline
    if not tail.strip():
        return 0
    try:
        json.loads(tail)
    except ValueError:
        _sync_write(path, lambda fh: fh.truncate(len(data) - len(tail)), "r+b")
        return len(tail)
    _sync_write(path, lambda fh: fh.write(b"\n"), "ab")
    return 0


def _sync_write(path: Path, change, mode: str) -> None:
    with open(path, mode) as fh:
        change(fh)
        fh.flush()
        os.fsync(fh.fileno())
