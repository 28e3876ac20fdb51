"""The ``ppo`` stage's side of the shared policy evaluation (:mod:`rlhf_plug.policy.held_out`).

Runs on the main process. :class:`PPOSampler` samples with the PPO loop's own rollout code
(the same generation settings as training), the reference being the shared base with the policy
adapter off, and measures the KL with the loop's own log-probabilities.
"""

from __future__ import annotations

from typing import Any

from rlhf_plug.policy.held_out import PolicyEvalContext, PolicyEvaluation, SampledBatch, Samples

PPOEvalContext = PolicyEvalContext  # the name evaluators used before the evaluation was shared

__all__ = ["Evaluation", "PPOEvalContext", "PPOSampler", "Samples"]


class PPOSampler:
    """Samples for :class:`PolicyEvaluation` from a :class:`rlhf_plug_plugins.ppo.loop.PPOLoop`."""

    def __init__(self, loop):
        self.loop = loop
        self.batch_size = loop.args.batch_size

    def sample(self, prompts: list[Any], policy: bool) -> SampledBatch:
        roll = self.loop.generate(prompts, adapter_on=policy)
        lengths = [int(n) for n in roll.response_mask.sum(1).tolist()]
        kl = self.loop.sequence_kl(roll).tolist() if policy else None
        return SampledBatch(roll.completions, roll.completion_ids(), lengths, kl)

    def policy_is_reference(self) -> bool:
        return self.loop.actor_critic.policy_is_identity()


def Evaluation(loop, prompts: list[Any], columns: dict[str, list]) -> PolicyEvaluation:  # noqa: N802 (was a class)
    """The held-out evaluation of a PPO loop's policy against its reference."""
    return PolicyEvaluation(PPOSampler(loop), prompts, columns, loop.rewards, loop.judges, loop.ctx.seed, "ppo")
