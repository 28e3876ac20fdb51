"""The reward-function contract, shared by every caller (PPO, `rlhf-plug label --annotator`, evaluators).

A reward function follows TRL's convention and is called with keywords:
``fn(prompts=..., completions=..., completion_ids=..., **columns) -> list[float]``,
one finite number per completion, at most :data:`REWARD_LIMIT` in magnitude. Anything
else stops the run with one line that says where (``where``) and what was wrong.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from rlhf_plug.errors import RewardError, UserError

#: The largest reward magnitude accepted. A finite 1e300 still overflows the running statistics and
#: the advantages to inf (and then the policy's logits to NaN); no sensible reward comes near 1e6.
REWARD_LIMIT = 1e6


def call_reward_function(fn, where: str, *, first: int = 0, **inputs) -> list[float]:
    """Call ``fn(**inputs)`` and check its output; ``first`` is how messages number the first completion.

    ``fn`` gets its own copy of every list and dict in the inputs, so a function that edits them in place
    changes nothing for the next reward function, nor what a caller saves or trains on. Other objects
    (TRL passes its trainer state, for one) are passed as they are.
    """
    try:
        values = fn(**{key: own_copy(value) for key, value in inputs.items()})
    except UserError:
        raise
    except Exception as exc:
        raise RewardError(f"{where} raised {type(exc).__name__}: {exc}") from exc
    return check_reward_output(values, len(inputs["completions"]), where, first=first)


def own_copy(value: Any) -> Any:
    """A copy of the lists, tuples and dicts inside ``value``, all the way down; strings and numbers are immutable."""
    if isinstance(value, list):
        return [own_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(own_copy(v) for v in value)
    if isinstance(value, dict):
        return {k: own_copy(v) for k, v in value.items()}
    return value


def check_reward_output(values: Any, expected: int, where: str, *, first: int = 0) -> list[float]:
    """``values`` as a list of ``expected`` floats, or a :class:`RewardError` naming ``where`` and the completion."""
    if hasattr(values, "tolist") and not isinstance(values, (list, tuple)):
        values = values.tolist()  # numpy arrays and tensors
    if not isinstance(values, (list, tuple)):
        raise RewardError(f"{where} returned {type(values).__name__}; expected a list of {expected} floats")
    if len(values) != expected:
        raise RewardError(f"{where} returned {len(values)} values for {expected} completions")
    out = []
    for i, value in enumerate(values, start=first):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise RewardError(f"{where} returned {type(value).__name__} {value!r} for completion {i}; expected a float")
        if not math.isfinite(float(value)):
            raise RewardError(f"{where} returned {value} for completion {i}; rewards must be finite")
        if abs(float(value)) > REWARD_LIMIT:
            raise RewardError(
                f"{where} returned {float(value):.6g} for completion {i}; rewards must lie within ±{REWARD_LIMIT:g} "
                "(scale the reward down, or normalise it)"
            )
        out.append(float(value))
    return out


__all__ = [
    "REWARD_LIMIT",
    "call_reward_function",
    "check_reward_output",
]
