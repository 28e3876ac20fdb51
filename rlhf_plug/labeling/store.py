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
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rlhf_plug.data import validate_rows
from rlhf_plug.errors import DataError


def prompt_key(prompt: Any) -> str:
    """Rows with the same prompt content (text or messages) share a key."""
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def skipped_path(out: Path) -> Path:
    return out.with_name(f"{out.name.removesuffix('.jsonl')}.skipped.jsonl")


@dataclass
class JsonlLog:
    """An append-only JSON Lines file of rows with a ``prompt``."""

    path: Path
    keys: set[str] = field(default_factory=set)
    rows: int = 0
    repaired: int = 0  # bytes of a cut-off last line that were removed

    def open(self, check_row=None) -> JsonlLog:
        """Read existing rows (remembering their prompts) and repair a cut-off last line."""
        if not self.path.is_file():
            return self
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        for number, line in enumerate(lines, 1):
            if line.strip():
                self._remember(self._parse(line, number), number, check_row)
        if tail.strip():
            try:
                row = json.loads(tail)
            except ValueError:
                self._truncate(len(data) - len(tail))
            else:  # complete but without its newline (e.g. edited by hand)
                self._remember(row, len(lines) + 1, check_row)
                self._append_bytes(b"\n")
        return self

    def append(self, row: dict) -> None:
        self._append_bytes((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
        self.keys.add(prompt_key(row["prompt"]))
        self.rows += 1

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
        self.keys.add(prompt_key(row["prompt"]))
        self.rows += 1

    def _truncate(self, size: int) -> None:
        self.repaired = self.path.stat().st_size - size
        with open(self.path, "r+b") as fh:
            fh.truncate(size)
            fh.flush()
            os.fsync(fh.fileno())

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
    """The rankings file and its skipped-prompts sidecar."""

    def __init__(self, out: Path, *, forget_skipped: bool = False):
        self.rankings = JsonlLog(out).open(partial(check_ranking, out))
        self.skipped = JsonlLog(skipped_path(out))
        if not forget_skipped:
            self.skipped.open()

    @property
    def path(self) -> Path:
        return self.rankings.path

    def done(self, prompt: Any) -> bool:
        key = prompt_key(prompt)
        return key in self.rankings.keys or key in self.skipped.keys

    def add_ranking(self, prompt: Any, completions: list[Any], order: tuple[int, ...]) -> None:
        """Append ``completions`` reordered best first; refuse a row the reward stage would reject."""
        row = {"prompt": prompt, "completions": [completions[i] for i in order]}
        validate_rows([row], "rankings", f"{self.path} (new row)")
        self.rankings.append(row)

    def add_skip(self, prompt: Any) -> None:
        self.skipped.append({"prompt": prompt})
