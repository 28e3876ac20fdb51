"""``rlhf-plug label stats FILE``: the figures of :mod:`.agreement` as rich tables. Reads the file, writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlhf_plug.errors import DataError
from rlhf_plug.labeling import agreement


def read_rankings(path: Path) -> list[dict]:
    """Every row of a rankings file, checked as the reward stage would (a bad row names the file and row)."""
    from rlhf_plug.data import parse_jsonl, validate_rows

    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with open(path, encoding="utf-8") as fh:
        rows = parse_jsonl(fh, str(path))
    for number, row in enumerate(rows, 1):
        try:
            validate_rows([row], "rankings", str(path))
        except DataError as exc:
            raise DataError(str(exc).replace(": row 1,", f": row {number},", 1)) from None
    if not rows:
        raise DataError(f"{path}: no rankings yet")
    return rows


def judge_scorer(registries, name: str, options: dict[str, Any]):
    """``score(prompt, completions) -> floats`` with a registered reward function (TRL's keyword convention)."""
    from rlhf_plug.labeling.reward_ranker import build_standalone_reward
    from rlhf_plug.rewards import call_reward_function

    fn = build_standalone_reward(registries, name, options, ("--judge", "--judge-with"))

    def score(prompt, completions):
        return call_reward_function(fn, f"judge '{name}'", first=1, prompts=[prompt] * len(completions), completions=completions)

    return score


def print_stats(path: Path, console, registries=None, judge: str | None = None, judge_with: dict | None = None) -> None:
    rows = read_rankings(Path(path))
    names = sorted({agreement.annotator(r) for r in rows})
    prompts = len(agreement.by_prompt(rows))
    console.print(f"{path}: {len(rows)} rankings of {prompts} prompts by {len(names)} annotator(s): {', '.join(names)}",
                  soft_wrap=True)
    _between(console, rows)
    if judge:
        _judge(console, rows, judge, agreement.with_judge(rows, judge_scorer(registries, judge, judge_with or {})))
    _ratings(console, rows)


def _percent(tally: agreement.Tally) -> str:
    return "-" if tally.rate is None else f"{100 * tally.rate:.1f}%"


def _table(title: str, *columns: str):
    from rich.table import Table

    table = Table(title=title, header_style="bold", title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    return table


def _between(console, rows: list[dict]) -> None:
    pairs, overall = agreement.between_annotators(rows)
    if not pairs:
        console.print("No prompt was ranked by two annotators, so there is no agreement to measure "
                      "(label with --annotators A,B --overlap 2).", soft_wrap=True)
        return
    table = _table("Agreement between annotators (answer pairs ordered the same way, on shared prompts)",
                   "annotators", "shared prompts", "answer pairs", "agreement")
    for (a, b), tally in sorted(pairs.items()):
        table.add_row(f"{a} / {b}", str(tally.prompts), str(tally.pairs), _percent(tally))
    table.add_section()
    table.add_row("overall", str(overall.prompts), str(overall.pairs), _percent(overall), style="bold")
    console.print(table)


def _judge(console, rows: list[dict], name: str, tallies: dict[str, agreement.Tally]) -> None:
    table = _table(f"Agreement with the judge '{name}' (pairs it scores equal are left out)",
                   "annotator", "rankings", "answer pairs", "agreement", "tied pairs")
    total = agreement.Tally()
    for who, tally in sorted(tallies.items()):
        table.add_row(who, str(tally.prompts), str(tally.pairs), _percent(tally), str(tally.ties))
        total.agree, total.pairs, total.prompts, total.ties = (
            total.agree + tally.agree, total.pairs + tally.pairs, total.prompts + tally.prompts, total.ties + tally.ties)
    table.add_section()
    table.add_row("all", str(total.prompts), str(total.pairs), _percent(total), str(total.ties), style="bold")
    console.print(table)


def _ratings(console, rows: list[dict]) -> None:
    averages = agreement.rating_averages(rows)
    if averages:
        table = _table("Ratings (1-7) per criterion", "criterion", "ratings", "mean", "mean, ranked best", "mean, ranked worst")
        for criterion, s in averages.items():
            table.add_row(criterion, str(s.count), f"{s.mean:.2f}", _maybe(s.best), _maybe(s.worst))
        console.print(table)
    counts, answers = agreement.flag_counts(rows)
    if answers:
        shown = ", ".join(f"{flag} {n} ({100 * n / answers:.0f}%)" for flag, n in sorted(counts.items())) or "none"
        console.print(f"Flags on {answers} answers: {shown}", soft_wrap=True)


def _maybe(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
