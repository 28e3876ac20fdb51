"""Calling reward functions and checking what they return.

A reward function follows TRL's convention and is called with keywords:
``fn(prompts=..., completions=..., completion_ids=..., **columns) -> list[float]``.
A reward function with a ``setup(context)`` method gets a
:class:`RewardSetup` once before training, so it can share the PPO base
model (the learned RM does) or load its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from rlhf_plug.recipe import ComponentRef
from rlhf_plug.rewards import call_reward_function


class JudgeRef(ComponentRef):
    """A reward function used for evaluation, under a name of its own."""

    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
        description="what metrics and reports call it (default: `use`); lets one component serve twice, "
        "e.g. three simulated_annotator judges named helpful, honest and harmless",
    )

    @property
    def label(self) -> str:
        return self.name or self.use


class RewardRef(JudgeRef):
    """A reward function and its weight in the summed reward."""

    weight: float = 1.0


@dataclass
class RewardSetup:
    """What ``setup(context)`` receives."""

    stage: Any  # rlhf_plug.stage.StageContext: earlier stages' outputs, errors located in the recipe
    base_path: str  # the PPO base model (the merged SFT model)
    actor_critic: Any  # the shared base: add_reward_adapter(dir) -> name; forward(role="reward", ...)
    tokenizer: Any  # the policy's tokenizer
    device: Any
    key: tuple  # where this component sits in the stage section, for errors


@dataclass
class RewardComponent:
    name: str  # the registered name (`use:`)
    label: str  # how errors refer to it, e.g. "reward[1] 'length_penalty'"
    fn: Any
    weight: float = 1.0
    key: tuple = ()  # where it sits in the stage section, for errors


def call_reward(component: RewardComponent, step: int, prompts, completions, completion_ids, columns) -> list[float]:
    """Call one reward function and insist on one finite number per completion."""
    where = f"{component.label} at PPO step {step}" if step is not None else f"{component.label} in evaluation"
    return call_reward_function(
        component.fn, where, prompts=prompts, completions=completions, completion_ids=completion_ids, **columns
    )


def setup_rewards(components: list[RewardComponent], make_setup) -> None:
    """Give reward functions that want it (``setup(context)``) the shared model and the stage."""
    for component in components:
        setup = getattr(component.fn, "setup", None)
        if callable(setup):
            setup(make_setup(component))


def check_reward_refs(ctx, config) -> None:
    """Each reward and judge exists, its ``with:`` is valid, and no label appears twice."""
    seen: set[str] = set()
    for key in ("reward", "judges"):
        for i, ref in enumerate(getattr(config, key, [])):
            ctx.component("reward_function", ref, (key, i))
            if ref.label in seen:
                raise ctx.error(
                    (key, i, "name" if ref.name else "use"),
                    f"'{ref.label}' appears twice in reward/judges; give one a different `name:`",
                )
            seen.add(ref.label)
