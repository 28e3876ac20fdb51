"""Completions to rank read from a file (``--candidates``) instead of sampled from a model.

Each row is a prompt and its K answers, e.g. the outputs of several models:
``{"prompt": ..., "completions": [a, b, c, d]}`` (the rankings format, in no
particular order). The answers are shown in an order shuffled per prompt
(seeded by ``--seed`` + the row number), the same for every annotator, so the
file's order (model A first, say) cannot bias the ranking.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from rlhf_plug.errors import DataError
from rlhf_plug.labeling.sampling import Samples
from rlhf_plug.labeling.store import prompt_key

K_RANGE = range(2, 10)  # one digit per answer when typed


def read_candidates(path: Path) -> list[tuple[Any, list[Any]]]:
    """(prompt, answers) per row; a bad row is a :class:`DataError` naming the file and the row."""
    from rlhf_plug.data import parse_jsonl, validate_rows

    where = f"--candidates {path}"
    if not path.is_file():
        raise DataError(f"{where}: no such file")
    with open(path, encoding="utf-8") as fh:
        rows = parse_jsonl(fh, str(path))
    if not rows:
        raise DataError(f"{where}: no rows; expected {{\"prompt\": ..., \"completions\": [...]}} per line")
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, 1):
        try:
            validate_rows([row], "rankings", str(path))  # prompt: text or messages; completions: 2 or more
        except DataError as exc:
            raise _row_error(exc, number) from None
        if len(row["completions"]) not in K_RANGE:
            raise DataError(f"{path}: row {number}, column 'completions': {len(row['completions'])} answers; "
                            f"{K_RANGE[0]} to {K_RANGE[-1]} can be ranked")
        first = seen.setdefault(prompt_key(row["prompt"]), number)
        if first != number:
            raise DataError(f"{path}: row {number}: the same prompt as row {first}; put all its answers in one row")
    from rlhf_plug.column_types import check_column_types

    pairs = [(row["prompt"], row["completions"]) for row in rows]
    # the rankings written from these must load as one table: text prompts and message prompts do not mix
    check_column_types([{"prompt": p, "completions": c} for p, c in pairs], str(path))
    return pairs


def _row_error(exc: DataError, number: int) -> DataError:
    return DataError(str(exc).replace(": row 1,", f": row {number},", 1))


class CandidateSampler:
    """Hands out the file's answers where a :class:`~rlhf_plug.labeling.sampling.Sampler` would sample."""

    def __init__(self, rows: list[tuple[Any, list[Any]]], seed: int):
        self.answers = {prompt_key(p): list(c) for p, c in rows}
        self.seed = seed

    def sample(self, prompt: Any, k: int, index: int) -> Samples:
        answers = list(self.answers[prompt_key(prompt)])
        random.Random(self.seed + index).shuffle(answers)
        return Samples(answers, [[] for _ in answers], [True] * len(answers))
