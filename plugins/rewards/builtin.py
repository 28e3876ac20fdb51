"""Default reward functions: the simulated annotator, the summary judge and a length penalty.

Reward functions follow TRL's convention
``(prompts, completions, **columns) -> list[float]``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from rlhf_plug import hookimpl


class SimulatedAnnotator:
    """Programmatic judge of the built-in task (helpful/honest/harmless or their total)."""

    def __init__(self, criterion: Literal["total", "helpful", "honest", "harmless"] = "total"):
        self.criterion = criterion
        self.__name__ = f"simulated_annotator:{criterion}"

    def __call__(self, prompts, completions, **columns) -> list[float]:
        from rlhf_plug_plugins.rewards.annotator import score_answer, to_text

        return [score_answer(to_text(p), to_text(c))[self.criterion] for p, c in zip(prompts, completions)]


class LengthPenalty:
    """−``per_word`` for every word beyond ``max_words`` in the completion."""

    def __init__(self, max_words: int = 30, per_word: float = 0.02):
        self.max_words = max_words
        self.per_word = per_word
        self.__name__ = "length_penalty"

    def __call__(self, prompts, completions, **columns) -> list[float]:
        from rlhf_plug_plugins.rewards.annotator import to_text

        return [-self.per_word * max(0, len(to_text(c).split()) - self.max_words) for c in completions]


class SummaryJudge:
    """Programmatic TL;DR labeller: key-word coverage minus hallucination, length, copying and repetition."""

    def __init__(self, max_words: Annotated[int, Field(gt=0)] = 40):
        self.max_words = max_words
        self.__name__ = "summary_judge"

    def __call__(self, prompts, completions, **columns) -> list[float]:
        from rlhf_plug_plugins.rewards.annotator import to_text
        from rlhf_plug_plugins.rewards.summary_judge import score_summary

        return [score_summary(to_text(p), to_text(c), self.max_words)["total"] for p, c in zip(prompts, completions)]


@hookimpl
def rlhf_register_reward_functions(register):
    register("simulated_annotator", SimulatedAnnotator)
    register("length_penalty", LengthPenalty)
    register("summary_judge", SummaryJudge)
    register("trl_reward", TRLReward)


class TRLReward:
    """One of TRL's built-in reward functions (``trl.rewards.<name>``), e.g. ``think_format_reward``."""

    def __init__(self, name: str):
        import trl.rewards

        if not callable(getattr(trl.rewards, name, None)):
            available = ", ".join(n for n in dir(trl.rewards) if n.endswith("reward") and not n.startswith("_"))
            raise ValueError(f"trl.rewards has no reward function '{name}' (available: {available})")
        self.fn = getattr(trl.rewards, name)
        self.__name__ = f"trl:{name}"

    def __call__(self, prompts, completions, **columns) -> list[float]:
        return self.fn(prompts=prompts, completions=completions, **columns)
