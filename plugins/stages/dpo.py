"""The ``dpo`` stage: Direct Preference Optimization with ``trl.DPOTrainer``.

No reward model and no sampling: the policy (a LoRA adapter on the SFT model) learns from
chosen/rejected pairs directly. The reference is the same model with the adapter off, which
TRL does by itself when it gets a ``peft_config``. Rankings are expanded into all their pairs,
the pairs of one prompt kept in one split (:func:`rlhf_plug.data.load_split`), as in the
reward stage. ``args`` go to ``trl.DPOConfig`` as they are (``beta``, ``loss_type``, ...).
"""

from __future__ import annotations

from pydantic import Field

from rlhf_plug import hookimpl
from rlhf_plug.recipe import DataRef
from rlhf_plug.stage import StageConfig

from rlhf_plug.policy.trl_evaluation import PolicyEvalConfig, check_evaluators
from rlhf_plug.policy.trl_rewards import check_reward_refs

DPO_FORMATS = ("preference",)  # rankings are accepted and expanded into pairs
#: Unless the recipe's ``args`` say otherwise. TRL's learning rate (1e-6) suits full fine-tuning;
#: a LoRA adapter needs more. Pairs longer than ``max_length`` are cut by TRL (``truncation_mode``).
DPO_DEFAULTS = {"learning_rate": 1e-4, "per_device_train_batch_size": 8}
EVAL_PAIRS = 128  # held-out pairs for TRL's own DPO metrics (``eval_rewards/margins_after``, ...)


class DPOStageConfig(StageConfig, PolicyEvalConfig):
    data: DataRef = Field(description="chosen/rejected pairs or rankings (best first)")


class DPOStage:
    """DPO on preference pairs or rankings, reference = the SFT model with the adapter off (trl.DPOTrainer)."""

    def __init__(self, config: DPOStageConfig):
        self.config = config

    def check(self, ctx) -> None:
        from trl import DPOConfig

        ctx.check_args(DPOConfig)
        ctx.check_lora("CAUSAL_LM")
        ctx.check_model(default_from=("sft",))
        check_reward_refs(ctx, self.config)
        check_evaluators(ctx, self.config)
        self._held_out_prompts(ctx, ctx.load_data(self.config.data, ("data",), DPO_FORMATS))

    def _held_out_prompts(self, ctx, split):
        """``eval_prompts:``, else the distinct prompts of the held-out pairs (for the policy evaluation)."""
        if self.config.eval_prompts is not None:
            return ctx.load_data(self.config.eval_prompts, ("eval_prompts",), ("prompt_only", "prompt_completion")).train
        if split.eval is None or not len(split.eval):
            return None
        from datasets import Dataset

        from rlhf_plug_plugins.stages.reward_data import with_explicit_prompts

        seen, prompts = set(), []
        for prompt in with_explicit_prompts(split.eval)["prompt"]:
            if repr(prompt) not in seen:
                seen.add(repr(prompt))
                prompts.append({"prompt": prompt})
        return Dataset.from_list(prompts)

    def run(self, ctx) -> dict:
        from trl import DPOConfig, DPOTrainer

        from rlhf_plug.models import load_tokenizer
        from rlhf_plug.progress import attach_progress
        from rlhf_plug.training import run_info, save_trained, trl_trainer

        from rlhf_plug_plugins.evaluation.reward_model import subset
        from rlhf_plug_plugins.stages.peak_memory import peak_memory, reset_peak_memory
        from rlhf_plug_plugins.stages.reward_data import with_explicit_prompts
        from rlhf_plug.policy.trl_evaluation import TRLPolicyEvaluation
        from rlhf_plug.policy.trl_rewards import reward_components, setup_components

        reset_peak_memory()
        split = ctx.load_data(self.config.data, ("data",), DPO_FORMATS)
        base = ctx.model_path(default_from=("sft",))
        tokenizer = load_tokenizer(base)
        # TRL's held-out pair metrics (margin, accuracy) on a fixed subset: every pair costs 4 forward passes.
        has_eval = split.eval is not None and len(split.eval) > 0
        held_out = with_explicit_prompts(subset(split.eval, EVAL_PAIRS)) if has_eval else None
        trainer = trl_trainer(
            DPOTrainer, DPOConfig, ctx, base=base, tokenizer=tokenizer, train=with_explicit_prompts(split.train),
            evaluation=held_out, task_type="CAUSAL_LM", **DPO_DEFAULTS,
        )
        attach_progress(trainer, ctx, ("loss", "rewards/margins", "rewards/accuracies"))
        judges = reward_components(ctx, self.config.judges, "judges")
        setup_components(ctx, judges, base, tokenizer, trainer.accelerator.device)
        evaluation = TRLPolicyEvaluation(ctx, self.config, trainer, self._held_out_prompts(ctx, split), judges=judges)
        results: dict = {**run_info(ctx, base), "train_pairs": len(split.train), "eval_pairs": len(split.eval) if has_eval else 0}
        results["eval_prompts"] = evaluation.prompts
        results.update(evaluation.run(0, "before"))
        train_output = trainer.train()
        results.update(evaluation.run(trainer.state.global_step, "after"))
        results["train_loss"] = float(train_output.training_loss)
        results["steps"] = trainer.state.global_step
        if held_out is not None:
            after = trainer.evaluate()  # logged by the progress callback; before training, margins are 0
            results.update({f"{k}_after": v for k, v in after.items() if _is_pair_metric(k)})
        results.update(peak_memory())
        save_trained(trainer, ctx, base, tokenizer, "AutoModelForCausalLM")
        return results


def _is_pair_metric(key: str) -> bool:
    return key in ("eval_loss", "eval_rewards/margins", "eval_rewards/accuracies", "eval_rewards/chosen", "eval_rewards/rejected")


@hookimpl
def rlhf_register_stages(register):
    register("dpo", DPOStage, config=DPOStageConfig)
