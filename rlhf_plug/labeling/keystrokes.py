"""Turn what a person typed into a ranking, a skip or a quit (no I/O here)."""

from __future__ import annotations

import re
from dataclasses import dataclass

SEPARATORS = re.compile(r"[\s,;>]+")
SKIP_WORDS = ("s", "skip")
QUIT_WORDS = ("q", "quit", "exit")


@dataclass(frozen=True)
class Decision:
    """What to do with one prompt: ``rank`` (with ``order``, 0-based, best first), ``skip`` or ``quit``."""

    kind: str
    order: tuple[int, ...] = ()


SKIP = Decision("skip")
QUIT = Decision("quit")


def is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts '¹' and '１', which ``int`` then refuses or reads oddly."""
    return text.isascii() and text.isdigit()


class BadKeys(ValueError):
    """The input was not a full ranking; the message says what was wrong."""


def parse_ranking(typed: str, k: int) -> Decision:
    """Parse ``3142``, ``3 1 4 2`` or ``3,1,4,2`` (best first), ``s`` or ``q``.

    :raises BadKeys: with a one-line explanation of the first problem found.
    """
    text = typed.strip().lower()
    if text in SKIP_WORDS:
        return SKIP
    if text in QUIT_WORDS:
        return QUIT
    digits = SEPARATORS.sub("", text)
    if not digits:
        raise BadKeys("nothing typed")
    stray = next((c for c in digits if not is_number(c)), None)
    if stray is not None:
        raise BadKeys(f"'{stray}' is not a completion number")
    numbers = [int(c) for c in digits]
    outside = next((n for n in numbers if not 1 <= n <= k), None)
    if outside is not None:
        raise BadKeys(f"{outside} is not a completion number (1-{k})")
    repeated = next((n for i, n in enumerate(numbers) if n in numbers[:i]), None)
    if repeated is not None:
        raise BadKeys(f"{repeated} appears twice")
    if len(numbers) != k:
        missing = ", ".join(str(n) for n in range(1, k + 1) if n not in numbers)
        raise BadKeys(f"got {len(numbers)} of {k} numbers (missing {missing})")
    return Decision("rank", tuple(n - 1 for n in numbers))


def usage(k: int) -> str:
    """The one-line reminder of what to type."""
    example = "".join(str(n) for n in (2, 1, *range(3, k + 1)))
    return f"rank all {k} best first, e.g. {example} (spaces or commas allowed); s = skip, q = quit"
