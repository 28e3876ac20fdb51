"""Default reward functions: the simulated annotator and a length penalty.

Reward functions follow TRL's convention
``(prompts, completions, **columns) -> list[float]``.
"""

from __future__ import annotations

from typing import Literal

from rlhf_plug import hookimpl


class SimulatedAnnotator:
    """Programmatic judge of the built-in task (helpful/honest/harmless or their total)."""

    def __init__(self, criterion: Literal["total", "helpful", "honest", "harmless"] = "total"):
        self.criterion = criterion
        self.__name__ = f"simulated_annotator:{criterion}"

    def __call__(self, prompts, completions, **columns) -> list[float]:
        from rlhf_plug_plugins.annotator import score_answer, to_text

        return [score_answer(to_text(p), to_text(c))[self.criterion] for p, c in zip(prompts, completions)]


class LengthPenalty:
    """−``per_word`` for every word beyond ``max_words`` in the completion."""

    def __init__(self, max_words: int = 30, per_word: float = 0.02):
        self.max_words = max_words
        self.per_word = per_word
        self.__name__ = "length_penalty"

    def __call__(self, prompts, completions, **columns) -> list[float]:
        from rlhf_plug_plugins.annotator import to_text

        return [-self.per_word * max(0, len(to_text(c).split()) - self.max_words) for c in completions]


@hookimpl
def rlhf_register_reward_functions(register):
    register("simulated_annotator", SimulatedAnnotator)
    register("length_penalty", LengthPenalty)
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
