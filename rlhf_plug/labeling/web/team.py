"""Who labels what: annotators, their private tokens, and which prompts each one sees.

Prompt ``i`` goes to ``overlap`` annotators in turn, starting at annotator
``i mod N`` (round robin), so every annotator gets about ``P * overlap / N``
prompts and every pair of neighbours shares some: enough for agreement figures.
The assignment depends only on the prompt's position, so a restarted server
gives everyone the same prompts again.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

from rlhf_plug.errors import UserError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


def parse_names(text: str) -> list[str]:
    """``alice,bob,carol`` -> names; each a short word, no repeats."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UserError("--annotators: give at least one name, e.g. --annotators alice,bob")
    for name in names:
        if not NAME.fullmatch(name):
            raise UserError(f"--annotators: '{name}' is not a valid name (letters, digits, '_', '.', '-'; up to 40)")
    repeated = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if repeated:
        raise UserError(f"--annotators: '{repeated}' appears twice")
    return names


@dataclass
class Team:
    names: list[str]
    overlap: int = 1
    tokens: dict[str, str] = field(default_factory=dict)  # name -> token, new at every start

    def __post_init__(self):
        if not 1 <= self.overlap <= len(self.names):
            raise UserError(f"--overlap must be between 1 and the number of annotators ({len(self.names)}), got {self.overlap}")
        if not self.tokens:
            self.tokens = {name: secrets.token_urlsafe(18) for name in self.names}

    def annotators_of(self, index: int) -> list[str]:
        n = len(self.names)
        return [self.names[(index + j) % n] for j in range(self.overlap)]

    def assigned(self, name: str, n_prompts: int) -> list[int]:
        return [i for i in range(n_prompts) if name in self.annotators_of(i)]

    def who(self, token: str) -> str | None:
        """The annotator whose token this is (compared in constant time), or None."""
        found = None
        for name, expected in self.tokens.items():
            if secrets.compare_digest(token.encode(), expected.encode()):
                found = name
        return found
