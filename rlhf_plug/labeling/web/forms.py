"""Check a submitted form field by field; anything unexpected is a :class:`FormError` shown on the page.

Fields (answers numbered 1..K as shown): ``item`` (the prompt's number),
``order`` (the ranking, best first, typed as in the terminal: ``3142``),
``rating.CRITERION.N`` (1 to 7, or empty: not rated), ``flag.N`` (any of
:data:`FLAGS`, repeatable) and ``comment``. No other field is accepted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rlhf_plug.labeling.keystrokes import BadKeys, is_number, parse_ranking

#: failure flags (InstructGPT's labelers marked these per output): id -> what the page says.
FLAGS = {
    "harmful": ("harmful", "harmful content (unsafe, toxic, dangerous advice)"),
    "hallucination": ("hallucination", "states things that are made up or false"),
    "not_following_instruction": ("ignores instruction", "does not follow the instruction in the prompt"),
}
LIKERT = range(1, 8)
MAX_COMMENT = 2000
CRITERION = re.compile(r"[a-z][a-z0-9_]{0,29}")


def parse_criteria(text: str) -> list[str]:
    """``helpful,honest,harmless`` -> names (lowercase words; they become form fields and JSON keys); '' -> none."""
    from rlhf_plug.errors import UserError

    names = [c.strip() for c in text.split(",") if c.strip()]
    for name in names:
        if not CRITERION.fullmatch(name):
            raise UserError(f"--criteria: '{name}' is not a valid criterion (a lowercase word: a-z, 0-9, _)")
    if len(set(names)) != len(names):
        raise UserError(f"--criteria: a criterion appears twice in '{text}'")
    return names


class FormError(ValueError):
    """A submission that is not written; the message is shown on the page."""


@dataclass
class Submission:
    item: int
    order: tuple[int, ...]  # 0-based positions as shown, best first
    ratings: dict[str, list[int | None]]  # criterion -> one rating per answer as shown
    flags: list[list[str]]  # per answer as shown
    comment: str

    def columns(self) -> dict:
        """The extra columns of the row, lined up with the completions written best first."""
        return {
            "ratings": {c: [values[i] for i in self.order] for c, values in self.ratings.items()},
            "flags": [self.flags[i] for i in self.order],
            "comment": self.comment,
        }


def parse_item(form) -> int:
    value = _one(form, "item")
    if not is_number(value):
        raise FormError("this form has no valid prompt number; reload the page")
    return int(value)


def parse_submission(form, k: int, criteria: Sequence[str]) -> Submission:
    """``form``: a multi-dict (Starlette's ``FormData``); ``k``: answers shown."""
    numbers = [str(n) for n in range(1, k + 1)]
    allowed = {"item", "order", "comment"} | {f"flag.{n}" for n in numbers}
    allowed |= {f"rating.{c}.{n}" for c in criteria for n in numbers}
    unknown = sorted(set(form.keys()) - allowed)
    if unknown:
        raise FormError(f"unexpected field '{unknown[0]}'")
    item = parse_item(form)
    order = _order(_one(form, "order"), k)
    ratings = {c: [_rating(form, c, n) for n in numbers] for c in criteria}
    flags = [_flags(form, n) for n in numbers]
    comment = _one(form, "comment").strip()
    if len(comment) > MAX_COMMENT:
        raise FormError(f"the comment is {len(comment)} characters; at most {MAX_COMMENT}")
    return Submission(item, order, ratings, flags, comment)


def _one(form, name: str) -> str:
    values = form.getlist(name)
    if len(values) > 1:
        raise FormError(f"field '{name}' was sent {len(values)} times")
    value = values[0] if values else ""
    if not isinstance(value, str):
        raise FormError(f"field '{name}' must be text, not a file")
    return value


def _order(typed: str, k: int) -> tuple[int, ...]:
    if not typed.strip():
        raise FormError(f"rank all {k} answers first: type their numbers best first, or drag the cards")
    try:
        decision = parse_ranking(typed, k)
    except BadKeys as exc:
        raise FormError(f"ranking '{typed}': {exc}") from None
    if decision.kind != "rank":  # 's' or 'q' typed in the box: the page has buttons for those
        raise FormError(f"ranking '{typed}': type the answer numbers best first (use the Skip button to skip)")
    return decision.order


def _rating(form, criterion: str, n: str) -> int | None:
    value = _one(form, f"rating.{criterion}.{n}").strip()
    if not value:
        return None
    if not is_number(value) or int(value) not in LIKERT:
        raise FormError(f"answer {n}: {criterion} rating '{value}' must be a whole number from 1 to 7")
    return int(value)


def _flags(form, n: str) -> list[str]:
    values = form.getlist(f"flag.{n}")
    for value in values:
        if value not in FLAGS:
            raise FormError(f"answer {n}: unknown flag '{value}' (known: {', '.join(FLAGS)})")
    return sorted(set(values), key=list(FLAGS).index)
