"""Held-out evaluation of the PPO policy against the reference (the SFT model).

Runs on the main process. Policy and reference each sample one response per
held-out prompt with a fixed seed; every reward component and judge scores
both; the KL of each policy sample to the reference is measured. Evaluator
components then turn that into numbers and tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch


@dataclass
class Samples:
    completions: list[Any]
    scores: dict[str, list[float]]  # reward component or judge name -> one score per completion
    kl: list[float] | None = None  # sequence KL (sum of per-token log-ratios) to the reference
    lengths: list[int] | None = None


@dataclass
class PPOEvalContext:
    """What PPO evaluators receive (``evaluator(context) -> dict[str, float]``)."""

    step: int
    prompts: list[Any]
    policy: Samples
    reference: Samples
    rewards: dict[str, float]  # reward component name -> weight (the training reward is their weighted sum)
    judges: list[str]  # evaluation-only reward functions
    tables: dict[str, list[dict]] = field(default_factory=dict)  # evaluators add rows here; saved as JSONL

    @property
    def scorers(self) -> list[str]:
        return [*self.rewards, *self.judges]

    def total(self, samples: Samples) -> list[float]:
        """The weighted reward the policy is trained on, per sample."""
        return [sum(w * samples.scores[n][i] for n, w in self.rewards.items()) for i in range(len(samples.completions))]


class Evaluation:
    """Holds the held-out prompts and the reference samples (computed once: the reference never changes)."""

    def __init__(self, loop, prompts: list[Any], columns: dict[str, list]):
        self.loop = loop
        self.prompts = prompts
        self.columns = columns
        self.reference: Samples | None = None

    def _sample(self, adapter_on: bool) -> Samples:
        loop = self.loop
        completions, ids, kls, lengths = [], [], [], []
        size = loop.args.batch_size
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):  # evaluation must not shift the training RNG
            torch.manual_seed(loop.ctx.seed)
            for start in range(0, len(self.prompts), size):
                roll = loop.generate(self.prompts[start : start + size], adapter_on=adapter_on)
                completions.extend(roll.completions)
                ids.extend(roll.completion_ids())
                lengths.extend(int(n) for n in roll.response_mask.sum(1).tolist())
                if adapter_on:
                    kls.extend(loop.sequence_kl(roll).tolist())
        scores = loop.score_all(self.prompts, completions, ids, self.columns)
        return Samples(completions, scores, kls if adapter_on else None, lengths)

    def run(self, step: int, evaluators: list) -> tuple[dict[str, float], dict[str, list[dict]]]:
        if self.reference is None:
            self.reference = self._sample(adapter_on=False)
        loop = self.loop
        if step == 0 and loop.actor_critic.policy_is_identity():
            policy = replace(self.reference, kl=[0.0] * len(self.prompts))  # the same answers: KL 0
        else:
            policy = self._sample(adapter_on=True)
        context = PPOEvalContext(
            step, self.prompts, policy, self.reference,
            rewards={c.name: c.weight for c in loop.rewards}, judges=[j.name for j in loop.judges],
        )
        metrics: dict[str, float] = {}
        for evaluator in evaluators:
            metrics.update(evaluator(context))
        return metrics, context.tables
