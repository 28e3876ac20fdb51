"""The shared policy evaluation (:mod:`rlhf_plug.policy.held_out`) for stages on TRL's trainers.

The policy is the trainer's LoRA model; the reference is the same model with the adapter off
(the SFT model), as in ``ppo``. Both sample with the rollout code of ``ppo``
(:func:`rlhf_plug.policy.sampling.sample`) and the stage's ``generation:`` settings, so
every method is judged on answers drawn the same way. Evaluation runs before and after
``trainer.train()``, on the main process.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Annotated, Any

from pydantic import Field

from rlhf_plug.recipe import ComponentRef, DataRef, Strict
from rlhf_plug.policy.rewards import JudgeRef
from rlhf_plug.policy.generation import GenerationArgs

PositiveInt = Annotated[int, Field(gt=0)]


class EvaluationArgs(Strict):
    """How many held-out prompts, in which batches, sampled how."""

    max_prompts: PositiveInt = Field(64, description="held-out prompts used per evaluation (at most)")
    batch_size: PositiveInt = 8
    max_prompt_length: PositiveInt = 256
    generation: GenerationArgs = Field(default_factory=GenerationArgs, description="sampling of the evaluated answers")


class PolicyEvalConfig(Strict):
    """Keys of a policy stage's held-out evaluation (the same as in ``ppo``)."""

    eval_prompts: DataRef | None = Field(None, description="held-out prompts; default: the stage's own held-out split")
    judges: list[JudgeRef] = Field(
        default_factory=list, description="reward functions used only in evaluation (e.g. a gold annotator)"
    )
    evaluators: list[ComponentRef] = Field(
        default_factory=lambda: [ComponentRef(use="reward_stats"), ComponentRef(use="win_rate"), ComponentRef(use="samples")]
    )
    evaluation: EvaluationArgs = Field(default_factory=EvaluationArgs)


def check_evaluators(ctx, config) -> None:
    for i, ref in enumerate(config.evaluators):
        ctx.component("evaluator", ref, ("evaluators", i))


class TRLSampler:
    """Samples for :class:`rlhf_plug.policy.held_out.PolicyEvaluation` from a peft model."""

    def __init__(self, model, tokenizer, args: EvaluationArgs, device):
        self.model, self.tokenizer, self.args, self.device = model, tokenizer, args, device
        self.batch_size = args.batch_size

    def _adapter(self, on: bool):
        return nullcontext() if on or not hasattr(self.model, "disable_adapter") else self.model.disable_adapter()

    def sample(self, prompts: list[Any], policy: bool):
        import torch

        from rlhf_plug.policy.held_out import SampledBatch
        from rlhf_plug.policy.sampling import sample

        with torch.no_grad(), self._adapter(policy):
            roll = sample(self.model, self.tokenizer, prompts, self.args.generation, self.args.max_prompt_length, self.device)
        lengths = [int(n) for n in roll.response_mask.sum(1).tolist()]
        return SampledBatch(roll.completions, roll.completion_ids(), lengths, self._sequence_kl(roll) if policy else None)

    def _sequence_kl(self, roll) -> list[float]:
        """Σ_t (log π − log π_ref) over the answer, both at the sampling temperature (as ``ppo`` measures it)."""
        import torch
        from trl.trainer.utils import selective_log_softmax

        ids, mask = roll.input_ids.to(self.device), roll.attention_mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        start = roll.prompt_length

        def logprobs() -> torch.Tensor:
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).logits
            return selective_log_softmax(logits[:, start - 1 : -1].float() / self.args.generation.temperature, ids[:, start:])

        with torch.no_grad():
            policy = logprobs()
            with self._adapter(False):
                reference = logprobs()
        return ((policy - reference) * roll.response_mask.to(self.device)).sum(1).cpu().tolist()

    def policy_is_reference(self) -> bool:
        """True while every LoRA B matrix is zero (peft's initialisation): the adapter changes nothing."""
        named = [(n, p) for n, p in self.model.named_parameters() if "lora_B" in n or "lora_embedding_B" in n]
        return bool(named) and all(not p.any() for _, p in named)


class TRLPolicyEvaluation:
    """Before/after evaluation of a TRL stage's policy; a no-op where there is nothing to evaluate.

    :param config: the stage's config (a :class:`PolicyEvalConfig`: ``evaluators``, ``evaluation``).
    :param held_out: held-out prompt rows (``prompt`` plus any columns the rewards read).
    :param rewards: the reward components the stage trains on (:func:`rlhf_plug.policy.trl_rewards.reward_components`),
        scored on the held-out samples as ``reward``; none for a stage without rewards (DPO, KTO).
    :param judges: the components of the stage's ``judges:``, scored under their own names.
    """

    def __init__(self, ctx, config, trainer, held_out, *, rewards: list = (), judges: list = ()):
        from rlhf_plug.policy.held_out import held_out_evaluation

        self.ctx, self.trainer = ctx, trainer
        self.evaluators = [ctx.build("evaluator", ref, ("evaluators", i)) for i, ref in enumerate(config.evaluators)]
        self.evaluation = None
        if self.evaluators and ctx.is_main_process:
            model = trainer.accelerator.unwrap_model(trainer.model)
            sampler = TRLSampler(model, trainer.processing_class, config.evaluation, trainer.accelerator.device)
            self.evaluation = held_out_evaluation(
                sampler, held_out, config.evaluation.max_prompts, list(rewards), list(judges), ctx.seed, ctx.kind
            )

    def run(self, step: int, when: str) -> dict:
        from rlhf_plug.policy.held_out import evaluate

        out = {}
        if self.evaluation is not None:
            model = self.evaluation.sampler.model
            was_training = model.training
            model.eval()
            try:
                out = evaluate(self.ctx, self.evaluation, self.evaluators, step, when)
            finally:
                model.train(was_training)
        self.trainer.accelerator.wait_for_everyone()
        return out

    @property
    def prompts(self) -> int:
        return 0 if self.evaluation is None else len(self.evaluation.prompts)
