"""Rank completions with a registered reward function instead of a person (``--annotator``)."""

from __future__ import annotations

from typing import Any

from rlhf_plug.errors import PluginError
from rlhf_plug.labeling.components import build_component
from rlhf_plug.labeling.keystrokes import Decision
from rlhf_plug.labeling.sampling import Samples
from rlhf_plug.rewards import call_reward_function


class RewardRanker:
    """Sorts the K completions by the reward function's score, best first (ties keep sampling order)."""

    def __init__(self, fn: Any, name: str, console):
        self.fn, self.name, self.console = fn, name, console

    def rank(self, prompt: Any, samples: Samples, progress: str) -> Decision:
        scores = self.scores(prompt, samples, progress)
        order = tuple(sorted(range(len(scores)), key=lambda i: (-scores[i], i)))
        shown = " ".join(f"{i + 1}:{scores[i]:.3f}" for i in order)
        self.console.print(f"[dim]{progress}[/] {self.name}: {shown}", soft_wrap=True)
        return Decision("rank", order)

    def scores(self, prompt: Any, samples: Samples, progress: str) -> list[float]:
        """Call the reward function (TRL's keyword convention) and insist on one finite number per completion."""
        k = len(samples.completions)
        return call_reward_function(
            self.fn, f"annotator '{self.name}' on prompt {progress}", first=1,
            prompts=[prompt] * k, completions=samples.completions, completion_ids=samples.completion_ids,
        )


def build_reward_ranker(registries, name: str, options: dict[str, Any], console) -> RewardRanker:
    return RewardRanker(build_standalone_reward(registries, name, options, ("--annotator", "--annotator-with")), name, console)


def build_standalone_reward(registries, name: str, options: dict[str, Any], flags: tuple[str, str]) -> Any:
    """A reward function that works on its own (no ``setup()`` with a training stage's model)."""
    fn = build_component(registries, "reward_function", name, options, flags)
    if callable(getattr(fn, "setup", None)):
        raise PluginError(
            f"{flags[0]}: reward function '{name}' needs a training stage's model (it has setup()) and cannot rank here"
        )
    return fn
