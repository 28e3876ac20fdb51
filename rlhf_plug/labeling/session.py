"""One labelling session: prompts in, rankings appended, resumable at any point.

Exit statuses: 0 when every prompt is done, after ``q`` or at the end of
input; 130 after Ctrl-C. Every ranking confirmed before either is already on
disk (see :mod:`.store`); running the same command again continues with the
prompts that are neither ranked nor skipped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhf_plug.errors import DataError, UserError

K_RANGE = range(4, 10)  # one keystroke per completion: digits 1..9


@dataclass
class LabelOptions:
    model: str | None
    prompts: str | None
    out: Path
    k: int = 4
    limit: int | None = None
    seed: int = 42
    max_new_tokens: int = 64
    temperature: float = 0.8
    annotator: str | None = None
    annotator_with: dict[str, Any] = field(default_factory=dict)
    retry_skipped: bool = False
    candidates: Path | None = None  # answers read from a file instead of sampled


def check_options(options: LabelOptions) -> None:
    if options.candidates is not None:
        if options.model or options.prompts:
            raise UserError("--candidates gives the prompts and their answers: leave out --model and --prompts")
    elif not (options.model and options.prompts):
        raise UserError("give --model and --prompts (answers sampled from a model), or --candidates FILE (answers you have)")
    if options.k not in K_RANGE:
        raise UserError(f"--k must be between {K_RANGE[0]} and {K_RANGE[-1]} (one digit per completion), got {options.k}")
    if options.limit is not None and options.limit < 1:
        raise UserError(f"--limit must be at least 1, got {options.limit}")
    if options.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be at least 1, got {options.max_new_tokens}")
    if not options.temperature > 0:
        raise UserError(f"--temperature must be greater than 0 (completions are sampled), got {options.temperature}")
    if options.annotator_with and not options.annotator:
        raise UserError("--annotator-with needs --annotator")
    check_out(Path(options.out))


def check_out(out: Path) -> None:
    """``--out`` must be a file to append to, or one to create (its folders are created too)."""
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give the rankings file to append to, e.g. {out / 'rankings.jsonl'}")
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UserError(f"--out {out}: {blocking} is a file, not a folder")


def run_labeling(options: LabelOptions, registries, console, read=None) -> int:
    """Label until the prompts run out, ``q``, end of input (status 0) or Ctrl-C (130)."""
    from rlhf_plug.labeling.store import RankingStore

    check_options(options)
    prompts, where, make_sampler_now = load_answers(options, registries, console)
    ranker = _ranker(options, registries, console, read)
    store = RankingStore(Path(options.out), forget_skipped=options.retry_skipped)
    report_repair(console, store)
    pending = [(i, p) for i, p in enumerate(prompts) if not store.done(p)]
    console.print(
        f"{len(prompts)} prompts from {where}: {len(prompts) - len(pending)} already ranked or skipped in {store.path}, "
        f"{len(pending)} to go", soft_wrap=True,
    )
    if not pending:
        return 0
    sampler = make_sampler_now()
    counts: Counter = Counter()
    try:
        finished = _label_all(pending, sampler, ranker, store, options.k, counts, console)
    except KeyboardInterrupt:
        console.print("\n[yellow]interrupted[/]")
        _summary(console, store, counts, finished=False)
        return 130
    _summary(console, store, counts, finished)
    return 0


def _label_all(pending, sampler, ranker, store, k: int, counts: Counter, console) -> bool:
    """Sample, rank and record each pending prompt; False if the ranker said quit."""
    for n, (index, prompt) in enumerate(pending, 1):
        samples = sampler.sample(prompt, k, index)
        decision = ranker.rank(prompt, samples, f"{n}/{len(pending)}")
        if decision.kind == "quit":
            return False
        _record(store, prompt, samples.completions, decision, counts, console)
    return True


def _ranker(options: LabelOptions, registries, console, read):
    if options.annotator:
        from rlhf_plug.labeling.reward_ranker import build_reward_ranker

        return build_reward_ranker(registries, options.annotator, options.annotator_with, console)
    from rlhf_plug.labeling.terminal import HumanRanker

    return HumanRanker(console, read)


def report_repair(console, store) -> None:
    if store.rankings.repaired:
        console.print(
            f"[yellow]{store.path}: removed a partially written last line ({store.rankings.repaired} bytes); "
            "that prompt will be asked again[/]", soft_wrap=True,
        )


def load_answers(options: LabelOptions, registries, console):
    """The prompts, where they came from, and a function that makes the sampler (a model loads only when called).

    With ``--candidates`` the "sampler" hands out the file's answers.
    """
    if options.candidates is not None:
        from rlhf_plug.labeling.candidates import CandidateSampler, read_candidates

        rows = read_candidates(Path(options.candidates))[: options.limit or None]
        return [p for p, _ in rows], str(options.candidates), lambda: CandidateSampler(rows, options.seed)
    from rlhf_plug.labeling.prompts import load_prompts
    from rlhf_plug.labeling.sampling import check_model

    check_model(options.model)
    prompts, where = load_prompts(options.prompts, registries, options.limit)
    return prompts, where, lambda: make_sampler(options, console)


def make_sampler(options: LabelOptions, console):
    from rlhf_plug.labeling.sampling import Sampler, model_location

    path = model_location(options.model, console)
    console.print(f"[dim]sampling {options.k} completions per prompt from {path}[/]", soft_wrap=True)
    return Sampler(path, max_new_tokens=options.max_new_tokens, temperature=options.temperature, seed=options.seed)


def _record(store, prompt, completions, decision, counts: Counter, console) -> None:
    if decision.kind == "skip":
        store.add_skip(prompt)
        counts["skipped"] += 1
        console.print("[dim]skipped[/]")
        return
    try:
        store.add_ranking(prompt, completions, decision.order)
    except DataError as exc:  # e.g. an empty completion of a text prompt: the reward stage would refuse it
        counts["not saved"] += 1
        console.print(f"[yellow]not saved: {exc}[/]", soft_wrap=True)
        return
    counts["ranked"] += 1
    console.print(f"[green]saved[/] {' > '.join(str(i + 1) for i in decision.order)}", soft_wrap=True)


def _summary(console, store, counts: Counter, finished: bool) -> None:
    done = ", ".join(f"{n} {what}" for what, n in counts.items()) or "nothing new"
    rows = store.rankings.rows
    console.print(f"{done}; {store.path} holds {rows} ranking{'s' if rows != 1 else ''}", soft_wrap=True)
    if not finished:
        console.print("run the same command again to continue where you left off", soft_wrap=True)
