"""The recipe's ``reward:`` list as TRL's ``reward_funcs`` and ``reward_weights`` (grpo, rloo).

Our reward functions already follow TRL's convention
(``fn(prompts=..., completions=..., completion_ids=..., **columns) -> list[float]``), so they go to
TRL as they are. Each is wrapped only by the output check the ``ppo`` stage uses
(:func:`rlhf_plug.rewards.call_reward_function`): NaN, inf, the wrong length, non-numbers or an
exception stop the run with one line naming the component and the step. TRL itself would turn
``None`` into NaN and carry on.
"""

from __future__ import annotations

from typing import Any

from rlhf_plug.rewards import call_reward_function
from rlhf_plug.policy.rewards import RewardComponent, RewardSetup, check_reward_refs, setup_rewards  # noqa: F401 (re-exported)


class CheckedReward:
    """A reward function TRL calls; checks what it returns, says where when it is wrong."""

    def __init__(self, component: RewardComponent, method: str):
        self.component = component
        self.method = method
        self.__name__ = component.name  # TRL logs rewards/<__name__>/mean

    def __call__(self, prompts, completions, completion_ids=None, **kwargs) -> list[float]:
        state = kwargs.get("trainer_state")
        where = self.component.label
        where += f" at {self.method} step {state.global_step + 1}" if state is not None else " in evaluation"
        return call_reward_function(
            self.component.fn, where, prompts=prompts, completions=completions, completion_ids=completion_ids, **kwargs
        )


def reward_components(ctx, refs, key: str) -> list[RewardComponent]:
    """Build the reward functions under ``key`` (``reward`` or ``judges``), labelled for errors."""
    return [
        RewardComponent(
            name=ref.label, label=f"{key}[{i}] '{ref.label}'", fn=ctx.build("reward_function", ref, (key, i)),
            weight=getattr(ref, "weight", 1.0), key=(key, i),
        )
        for i, ref in enumerate(refs)
    ]


def setup_components(ctx, components: list[RewardComponent], base: str, tokenizer, device: Any) -> None:
    """``setup(context)`` for the functions that want it; no shared base here (``actor_critic`` is None),
    so ``learned_rm`` loads the reward stage's merged model on its own."""
    setup_rewards(components, lambda c: RewardSetup(ctx, base, None, tokenizer, device, c.key))
