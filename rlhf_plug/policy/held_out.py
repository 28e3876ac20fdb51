"""Held-out evaluation of a policy against its reference (the SFT model), shared by every policy stage.

A stage that produces a policy (ppo, dpo, grpo, rloo, or a third party's) hands
:class:`PolicyEvaluation` a *sampler*: something that samples one answer per prompt from the
policy or from the reference, and measures each policy answer's KL to the reference. The
evaluation samples both with a fixed seed on the same held-out prompts, scores both with every
reward component and judge, and gives the evaluators one :class:`PolicyEvalContext`, whatever
the method. The report's policy sections read what they write (metrics and sample tables).

A sampler has ``batch_size``, ``sample(prompts, policy: bool) -> SampledBatch`` and
``policy_is_reference() -> bool`` (True while the policy samples exactly what the reference does,
e.g. a LoRA whose B matrices are still zero).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

SAMPLES_DIR = "samples"  # evaluation tables, one JSONL per evaluation


@dataclass
class SampledBatch:
    completions: list[Any]
    completion_ids: list[list[int]]
    lengths: list[int]
    kl: list[float] | None = None  # policy only: sequence KL (sum of per-token log-ratios) to the reference


@dataclass
class Samples:
    completions: list[Any]
    scores: dict[str, list[float]]  # reward component or judge name -> one score per completion
    kl: list[float] | None = None  # sequence KL (sum of per-token log-ratios) to the reference
    lengths: list[int] | None = None


@dataclass
class PolicyEvalContext:
    """What policy evaluators receive (``evaluator(context) -> dict[str, float]``), from every policy stage."""

    step: int
    prompts: list[Any]
    policy: Samples
    reference: Samples
    rewards: dict[str, float]  # reward component name -> weight (the training reward is their weighted sum; {} for dpo)
    judges: list[str]  # evaluation-only reward functions
    tables: dict[str, list[dict]] = field(default_factory=dict)  # evaluators add rows here; saved as JSONL
    method: str = ""  # the stage kind that trained the policy: "ppo", "dpo", "grpo", "rloo", ...

    @property
    def scorers(self) -> list[str]:
        return [*self.rewards, *self.judges]

    def total(self, samples: Samples) -> list[float]:
        """The weighted reward the policy is trained on, per sample."""
        return [sum(w * samples.scores[n][i] for n, w in self.rewards.items()) for i in range(len(samples.completions))]


class PolicyEvaluation:
    """Held-out prompts, the reference samples (computed once: the reference never changes) and the scorers.

    :param rewards: the training reward components (:class:`rlhf_plug.policy.rewards.RewardComponent`).
    :param judges: evaluation-only components, same type.
    """

    def __init__(self, sampler, prompts: list[Any], columns: dict[str, list], rewards: list, judges: list,
                 seed: int, method: str = ""):
        self.sampler = sampler
        self.prompts = prompts
        self.columns = columns
        self.rewards = rewards
        self.judges = judges
        self.seed = seed
        self.method = method
        self.reference: Samples | None = None

    def _sample(self, policy: bool) -> Samples:
        import torch

        completions, ids, kls, lengths = [], [], [], []
        size = self.sampler.batch_size
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):  # evaluation must not shift the training RNG
            torch.manual_seed(self.seed)
            for start in range(0, len(self.prompts), size):
                batch = self.sampler.sample(self.prompts[start : start + size], policy)
                completions.extend(batch.completions)
                ids.extend(batch.completion_ids)
                lengths.extend(batch.lengths)
                if policy:
                    kls.extend(batch.kl)
        return Samples(completions, self.score(completions, ids), kls if policy else None, lengths)

    def score(self, completions: list, completion_ids: list) -> dict[str, list[float]]:
        """Every reward component and judge on the same completions (checked like training rewards)."""
        from rlhf_plug.policy.rewards import call_reward

        return {
            c.name: call_reward(c, None, self.prompts, completions, completion_ids, self.columns)
            for c in [*self.rewards, *self.judges]
        }

    def run(self, step: int, evaluators: list) -> tuple[dict[str, float], dict[str, list[dict]]]:
        if self.reference is None:
            self.reference = self._sample(policy=False)
        if step == 0 and self.sampler.policy_is_reference():
            policy = replace(self.reference, kl=[0.0] * len(self.prompts))  # the same answers: KL 0
        else:
            policy = self._sample(policy=True)
        context = PolicyEvalContext(
            step, self.prompts, policy, self.reference,
            rewards={c.name: c.weight for c in self.rewards}, judges=[j.name for j in self.judges], method=self.method,
        )
        metrics: dict[str, float] = {}
        for evaluator in evaluators:
            metrics.update(evaluator(context))
        return metrics, context.tables


def held_out_evaluation(sampler, held_out, max_prompts: int, rewards: list, judges: list, seed: int, method: str):
    """A :class:`PolicyEvaluation` on the first ``max_prompts`` held-out rows, or None when there are none."""
    if held_out is None or len(held_out) == 0:
        return None
    rows = held_out.select(range(min(len(held_out), max_prompts)))
    columns = {c: list(rows[c]) for c in rows.column_names if c != "prompt"}
    return PolicyEvaluation(sampler, list(rows["prompt"]), columns, rewards, judges, seed, method)


def write_tables(folder: Path, step: int, tables: dict) -> None:
    for name, rows in tables.items():
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}-step-{step:06d}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def evaluate(ctx, evaluation, evaluators, step: int, when: str | None) -> dict:
    """Run the evaluators (main process), log them and write their tables; ``eval_<metric>_<when>`` for the results."""
    if evaluation is None:
        return {}
    metrics, tables = evaluation.run(step, evaluators)
    ctx.log_metrics(step, metrics, evaluation=True)
    write_tables(ctx.output_dir / SAMPLES_DIR, step, tables)
    return {f"eval_{k}_{when}": v for k, v in metrics.items()} if when is not None else {}
