"""Evaluators for every policy stage (ppo, dpo, grpo, rloo): reward and KL statistics, win-rate, sample tables.

Each receives a :class:`rlhf_plug.policy.held_out.PolicyEvalContext` in
which policy and reference (SFT) samples on held-out prompts have already been
scored by every reward component and judge. A stage without training rewards
(dpo) has ``context.rewards == {}``: the weighted-reward figures are then left out.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from rlhf_plug import hookimpl


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


class RewardStats:
    """Mean held-out reward per component and judge (policy and reference), the training reward, KL and length."""

    def __call__(self, context) -> dict[str, float]:
        metrics = {}
        for name in context.scorers:
            metrics[f"reward/{name}"] = _mean(context.policy.scores[name])
            metrics[f"reference_reward/{name}"] = _mean(context.reference.scores[name])
        if context.rewards:
            metrics["reward"] = _mean(context.total(context.policy))
            metrics["reference_reward"] = _mean(context.total(context.reference))
        if context.policy.kl is not None:
            metrics["kl"] = _mean(context.policy.kl)
        metrics["response_length"] = _mean(context.policy.lengths or [])
        return metrics


class WinRate:
    """How often the policy's answer beats the reference's on the same prompt (ties count half).

    ``tie_rate/<judge>`` is logged too: with a coarse judge many answers tie
    (identical answers always do), which pulls the win-rate towards 0.5.
    ``win_rate_2se/<judge>`` is the win-rate's noise: two standard errors of the
    per-prompt outcome (1, 0.5 or 0) over the held-out prompts.

    ``judge`` names a reward component or judge of the stage; unset, every one
    of them is used, plus the weighted training reward (``win_rate``).
    """

    def __init__(self, judge: str | None = None):
        self.judge = judge

    def __call__(self, context) -> dict[str, float]:
        if self.judge is not None:
            if self.judge not in context.scorers:
                raise ValueError(f"win_rate judge '{self.judge}' is not one of the stage's rewards or judges: {context.scorers}")
            names = [self.judge]
        else:
            names = context.scorers
        metrics = {}
        for n in names:
            policy, reference = context.policy.scores[n], context.reference.scores[n]
            outcomes = _outcomes(policy, reference)
            metrics[f"win_rate/{n}"] = _mean(outcomes)
            metrics[f"win_rate_2se/{n}"] = _two_standard_errors(outcomes)
            metrics[f"tie_rate/{n}"] = _mean(float(p == r) for p, r in zip(policy, reference))
        if self.judge is None and context.rewards:
            metrics["win_rate"] = _win_rate(context.total(context.policy), context.total(context.reference))
        return metrics


def _outcomes(policy, reference) -> list[float]:
    return [1.0 if p > r else 0.5 if p == r else 0.0 for p, r in zip(policy, reference)]


def _win_rate(policy, reference) -> float:
    return _mean(_outcomes(policy, reference))


def _two_standard_errors(values: list[float]) -> float:
    import statistics

    return 2 * statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")


class SampleTable:
    """A table of held-out samples: prompt, reference answer, policy answer and their scores.

    ``rows`` caps the table; by default every held-out prompt is kept, so the
    report's reward distributions cover the whole evaluation set.
    """

    def __init__(self, rows: Annotated[int, Field(gt=0)] | None = None):
        self.rows = rows

    def __call__(self, context) -> dict[str, float]:
        from rlhf_plug_plugins.rewards.annotator import to_text

        table = []
        for i in range(min(self.rows or len(context.prompts), len(context.prompts))):
            table.append({
                "prompt": to_text(context.prompts[i]),
                "reference": to_text(context.reference.completions[i]),
                "policy": to_text(context.policy.completions[i]),
                **{f"reference_{n}": context.reference.scores[n][i] for n in context.scorers},
                **{f"policy_{n}": context.policy.scores[n][i] for n in context.scorers},
            })
        context.tables["samples"] = table
        return {}


@hookimpl
def rlhf_register_evaluators(register):
    register("reward_stats", RewardStats)
    register("win_rate", WinRate)
    register("samples", SampleTable)
