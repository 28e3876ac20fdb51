"""Calling reward functions and checking what they return.

A reward function follows TRL's convention and is called with keywords:
``fn(prompts=..., completions=..., completion_ids=..., **columns) -> list[float]``.
A reward function with a ``setup(context)`` method gets a
:class:`RewardSetup` once before training, so it can share the PPO base
model (the learned RM does) or load its own.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from rlhf_plug.errors import RewardError, UserError


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
    try:
        values = component.fn(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)
    except UserError:
        raise
    except Exception as exc:
        raise RewardError(f"{where} raised {type(exc).__name__}: {exc}") from exc
    return check_reward_output(values, len(completions), where)


def check_reward_output(values: Any, expected: int, where: str) -> list[float]:
    if hasattr(values, "tolist") and not isinstance(values, (list, tuple)):
        values = values.tolist()  # numpy arrays and tensors
    if not isinstance(values, (list, tuple)):
        raise RewardError(f"{where} returned {type(values).__name__}; expected a list of {expected} floats")
    if len(values) != expected:
        raise RewardError(f"{where} returned {len(values)} values for {expected} completions")
    out = []
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise RewardError(f"{where} returned {type(value).__name__} {value!r} for completion {i}; expected a float")
        if not math.isfinite(float(value)):
            raise RewardError(f"{where} returned {value} for completion {i}; rewards must be finite")
        out.append(float(value))
    return out


def setup_rewards(components: list[RewardComponent], make_setup) -> None:
    """Give reward functions that want it (``setup(context)``) the shared model and the stage."""
    for component in components:
        setup = getattr(component.fn, "setup", None)
        if callable(setup):
            setup(make_setup(component))
