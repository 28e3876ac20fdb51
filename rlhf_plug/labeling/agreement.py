"""Agreement figures of a rankings file (no I/O): between annotators, with a judge, and rating averages.

Two rankings of one prompt *agree on a pair* of answers when they put the two
in the same order. Agreement is the fraction of answer pairs ordered the same,
pooled over the prompts two annotators share (InstructGPT reports about 73 %
between its labelers). Answers are matched by their content, so it does not
matter in which order each person saw them; an answer that occurs twice in one
ranking is left out (its position is ambiguous).
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rlhf_plug.labeling.store import prompt_key

UNNAMED = "(unnamed)"  # rows written without an annotator (the terminal mode)


@dataclass
class Tally:
    agree: int = 0
    pairs: int = 0
    prompts: int = 0
    ties: int = 0  # pairs the judge scored equal (not counted in pairs)

    @property
    def rate(self) -> float | None:
        return self.agree / self.pairs if self.pairs else None

    def add(self, agree: int, pairs: int) -> None:
        self.agree, self.pairs, self.prompts = self.agree + agree, self.pairs + pairs, self.prompts + 1


def annotator(row: dict) -> str:
    return str(row.get("annotator") or UNNAMED)


def positions(completions: Sequence[Any]) -> dict[str, int]:
    """Answer content -> rank (0 = best), without answers that occur twice."""
    keys = [prompt_key(c) for c in completions]
    return {k: i for i, k in enumerate(keys) if keys.count(k) == 1}


def pair_agreement(first: Sequence[Any], second: Sequence[Any]) -> tuple[int, int]:
    """(pairs ordered the same, pairs compared) for two rankings of one prompt."""
    a, b = positions(first), positions(second)
    shared = [k for k in a if k in b]
    same = sum((a[x] < a[y]) == (b[x] < b[y]) for x, y in itertools.combinations(shared, 2))
    return same, len(shared) * (len(shared) - 1) // 2


def by_prompt(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """prompt key -> annotator -> their (last) row for it."""
    grouped: dict[str, dict[str, dict]] = defaultdict(dict)
    for row in rows:
        grouped[prompt_key(row["prompt"])][annotator(row)] = row
    return grouped


def between_annotators(rows: list[dict]) -> tuple[dict[tuple[str, str], Tally], Tally]:
    """Per pair of annotators (names sorted) over the prompts they share, and all pairs pooled."""
    pairs: dict[tuple[str, str], Tally] = defaultdict(Tally)
    overall = Tally()
    for ranked in by_prompt(rows).values():
        for x, y in itertools.combinations(sorted(ranked), 2):
            same, n = pair_agreement(ranked[x]["completions"], ranked[y]["completions"])
            pairs[(x, y)].add(same, n)
            overall.agree, overall.pairs = overall.agree + same, overall.pairs + n
        overall.prompts += len(ranked) > 1  # prompts shared by two or more annotators
    return dict(pairs), overall


def with_judge(rows: list[dict], score: Callable[[Any, list[Any]], list[float]]) -> dict[str, Tally]:
    """Per annotator: how often the judge's scores order a pair of answers as the annotator did."""
    tallies: dict[str, Tally] = defaultdict(Tally)
    for row in rows:
        completions = row["completions"]
        scores = score(row["prompt"], completions)
        pos = positions(completions)
        tally = tallies[annotator(row)]
        same = pairs = 0
        for x, y in itertools.combinations(sorted(pos.values()), 2):  # x ranked above y
            if scores[x] == scores[y]:
                tally.ties += 1
                continue
            pairs += 1
            same += scores[x] > scores[y]
        tally.add(same, pairs)
    return dict(tallies)


@dataclass
class RatingSummary:
    count: int
    mean: float
    best: float | None  # mean rating of the answers ranked first
    worst: float | None  # ... and last


def rating_averages(rows: list[dict]) -> dict[str, RatingSummary]:
    """Criterion -> its ratings (1-7) over all answers, and over the best- and worst-ranked ones."""
    every: dict[str, list[int]] = defaultdict(list)
    best: dict[str, list[int]] = defaultdict(list)
    worst: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        ratings = row.get("ratings")
        if not isinstance(ratings, dict):
            continue
        for criterion, values in ratings.items():
            values = values if isinstance(values, list) else []
            every[criterion] += [v for v in values if isinstance(v, int)]
            if values and isinstance(values[0], int):
                best[criterion].append(values[0])
            if values and isinstance(values[-1], int):
                worst[criterion].append(values[-1])
    return {
        c: RatingSummary(len(v), statistics.fmean(v), _mean(best[c]), _mean(worst[c]))
        for c, v in every.items() if v
    }


def flag_counts(rows: list[dict]) -> tuple[dict[str, int], int]:
    """Flag -> answers flagged with it, and the answers in rows that carry flags."""
    counts: dict[str, int] = defaultdict(int)
    answers = 0
    for row in rows:
        flags = row.get("flags")
        if not isinstance(flags, list):
            continue
        answers += len(flags)
        for answer_flags in flags:
            for flag in answer_flags if isinstance(answer_flags, list) else []:
                counts[str(flag)] += 1
    return dict(counts), answers


def _mean(values: list[int]) -> float | None:
    return statistics.fmean(values) if values else None
