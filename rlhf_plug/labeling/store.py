"""The output file: one ranking per line, appended and fsynced as soon as it is confirmed.

Rows are exactly the *rankings* format of :mod:`rlhf_plug.data`
(``{"prompt": ..., "completions": [best, ..., worst]}``), so the reward stage
reads the file as it is. Appending line by line (instead of writing a temp file
and renaming it) is deliberate: every confirmed ranking must survive a crash.
A last line without its newline that is not valid JSON is a write that was cut
off; it is removed (it was never confirmed) and reported. Any other bad line is
an error naming the row.

Skipped prompts go to a sidecar (``<name>.skipped.jsonl``) as ``{"prompt": ...}``
rows, so a resumed session does not show them again.

The web mode adds columns (``annotator``, ratings, flags, ...) that the reward
stage ignores, and keeps "done" per annotator: several people rank one prompt.
Its undo removes one row by rewriting the file atomically (temp file, fsync,
rename), so the file is never seen half-written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rlhf_plug.data import validate_rows
from rlhf_plug.errors import DataError
from rlhf_plug.files import atomic_path, repair_last_line


def prompt_key(prompt: Any) -> str:
    """Rows with the same prompt content (text or messages) share a key."""
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def annotated_key(row: dict) -> tuple[Any, str]:
    """Rows are done per annotator (``annotator`` column; rows without one belong to nobody)."""
    return row.get("annotator"), prompt_key(row["prompt"])


def _prompt_row_key(row: dict) -> str:
    return prompt_key(row["prompt"])


def skipped_path(out: Path) -> Path:
    return out.with_name(f"{out.name.removesuffix('.jsonl')}.skipped.jsonl")


@dataclass
class JsonlLog:
    """An append-only JSON Lines file of rows with a ``prompt``."""

    path: Path
    key_of: Callable[[dict], Any] = _prompt_row_key
    keys: set[Any] = field(default_factory=set)
    rows: int = 0
    repaired: int = 0  # bytes of a cut-off last line that were removed

    def open(self, check_row=None) -> JsonlLog:
        """Read existing rows (remembering their prompts) and repair a cut-off last line."""
        if not self.path.is_file():
            return self
        self.repaired = repair_last_line(self.path)
        for number, line in enumerate(self.path.read_bytes().split(b"\n"), 1):
            if line.strip():
                self._remember(self._parse(line, number), number, check_row)
        return self

    def append(self, row: dict) -> None:
        self._append_bytes((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
        self.keys.add(self.key_of(row))
        self.rows += 1

    def remove_last(self, key: Any) -> bool:
        """Remove the last row with ``key`` (an undo); rewrites the file atomically. False if there is none."""
        if key not in self.keys:
            return False
        lines = self.path.read_bytes().splitlines(keepends=True)
        at = next(i for i in range(len(lines) - 1, -1, -1) if lines[i].strip() and self.key_of(json.loads(lines[i])) == key)
        del lines[at]
        with atomic_path(self.path) as temp, open(temp, "wb") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        self.keys.discard(key)
        self.rows -= 1
        return True

    def _parse(self, line: bytes, number: int) -> Any:
        try:
            return json.loads(line)
        except ValueError as exc:
            raise DataError(f"{self.path}: row {number}: invalid JSON ({exc}); fix or remove that line") from None

    def _remember(self, row: Any, number: int, check_row) -> None:
        if not isinstance(row, dict) or "prompt" not in row:
            raise DataError(f"{self.path}: row {number}: expected an object with a 'prompt'; is this the right file?")
        if check_row is not None:
            check_row(row, number)
        self.keys.add(self.key_of(row))
        self.rows += 1

    def _append_bytes(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def check_ranking(path: Path, row: dict, number: int) -> None:
    """An existing row must be a ranking the reward stage accepts."""
    try:
        validate_rows([row], "rankings", str(path))
    except DataError as exc:
        raise DataError(str(exc).replace(": row 1,", f": row {number},", 1)) from None


class RankingStore:
    """The rankings file and its skipped-prompts sidecar; ``annotated``: done is per annotator (web mode)."""

    def __init__(self, out: Path, *, forget_skipped: bool = False, annotated: bool = False):
        key_of = annotated_key if annotated else _prompt_row_key
        self.key_of = key_of
        self.rankings = JsonlLog(out, key_of).open(partial(check_ranking, out))
        self.skipped = JsonlLog(skipped_path(out), key_of)
        if not forget_skipped:
            self.skipped.open()

    @property
    def path(self) -> Path:
        return self.rankings.path

    def done(self, prompt: Any, annotator: str | None = None) -> bool:
        key = self.key_of({"prompt": prompt, "annotator": annotator})
        return key in self.rankings.keys or key in self.skipped.keys

    def add_ranking(self, prompt: Any, completions: list[Any], order: tuple[int, ...], extra: dict | None = None) -> None:
        """Append ``completions`` reordered best first (plus ``extra`` columns); refuse a row the reward stage would reject."""
        row = {"prompt": prompt, "completions": [completions[i] for i in order], **(extra or {})}
        validate_rows([row], "rankings", f"{self.path} (new row)")
        self.rankings.append(row)

    def add_skip(self, prompt: Any, extra: dict | None = None) -> None:
        self.skipped.append({"prompt": prompt, **(extra or {})})
