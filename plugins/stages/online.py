"""What the ``grpo`` and ``rloo`` stages share: TRL's online trainers against our reward functions.

Both sample ``num_generations`` completions per prompt, score them with the recipe's ``reward:``
list (TRL's ``reward_funcs`` + ``reward_weights``) and need no critic. TRL owns the loop,
checkpoints and resume; this module maps the recipe onto it (:func:`rlhf_plug.training.trl_trainer`).
"""

from __future__ import annotations

from pydantic import Field

from rlhf_plug.recipe import DataRef
from rlhf_plug.stage import StageConfig
from rlhf_plug.policy.rewards import RewardRef

from rlhf_plug.policy.trl_evaluation import PolicyEvalConfig, check_evaluators
from rlhf_plug.policy.trl_rewards import CheckedReward, check_reward_refs, reward_components, setup_components

PROMPT_FORMATS = ("prompt_only", "prompt_completion")
#: What every online stage sets unless the recipe's ``args`` say otherwise (TRL's 512 tokens
#: per completion and learning rate 1e-6 suit full fine-tuning on a GPU, not a LoRA on CPU).
ONLINE_DEFAULTS = {"learning_rate": 1e-4, "max_completion_length": 48}


class OnlineStageConfig(StageConfig, PolicyEvalConfig):
    prompts: DataRef = Field(description="prompt-only data (a `prompt` column, text or messages); other columns reach the reward functions")
    reward: list[RewardRef] = Field(
        default_factory=lambda: [RewardRef(use="learned_rm")], min_length=1,
        description="reward functions (TRL's reward_funcs); the reward is their weighted sum (reward_weights)",
    )


class OnlineStage:
    """Base of the grpo and rloo stages: subclasses name TRL's trainer and config classes."""

    method = ""  # "GRPO": how errors and reports name the step
    trainer = ""  # "GRPOTrainer"
    config_class_name = ""  # "GRPOConfig"

    def __init__(self, config: OnlineStageConfig):
        self.config = config

    def _classes(self):
        import trl

        return getattr(trl, self.trainer), getattr(trl, self.config_class_name)

    def check(self, ctx) -> None:
        config_class = self._classes()[1]
        if "reward_weights" in self.config.args:
            raise ctx.error(("args", "reward_weights"), "set `weight:` on each entry of `reward:` instead")
        ctx.check_args(config_class)
        ctx.check_lora("CAUSAL_LM")
        ctx.check_model(default_from=("sft",))
        check_reward_refs(ctx, self.config)
        check_evaluators(ctx, self.config)
        self._load_prompts(ctx)

    def _load_prompts(self, ctx):
        split = ctx.load_data(self.config.prompts, ("prompts",), PROMPT_FORMATS)
        held_out = split.eval
        if self.config.eval_prompts is not None:
            held_out = ctx.load_data(self.config.eval_prompts, ("eval_prompts",), PROMPT_FORMATS).train
        return split.train, held_out

    def run(self, ctx) -> dict:
        from rlhf_plug.models import load_tokenizer
        from rlhf_plug.progress import attach_progress
        from rlhf_plug.training import run_info, save_trained, trl_trainer

        from rlhf_plug.policy.generation_defaults import generation_defaults_off
        from rlhf_plug_plugins.stages.peak_memory import peak_memory, reset_peak_memory
        from rlhf_plug.policy.trl_evaluation import TRLPolicyEvaluation

        trainer_class, config_class = self._classes()
        reset_peak_memory()
        prompts, held_out = self._load_prompts(ctx)
        base = ctx.model_path(default_from=("sft",))
        tokenizer = load_tokenizer(base)
        rewards = reward_components(ctx, self.config.reward, "reward")
        judges = reward_components(ctx, self.config.judges, "judges")
        trainer = trl_trainer(
            trainer_class, config_class, ctx, base=base, tokenizer=tokenizer, train=prompts, task_type="CAUSAL_LM",
            trainer_kwargs={"reward_funcs": [CheckedReward(c, self.method) for c in rewards]},
            reward_weights=[c.weight for c in rewards], **ONLINE_DEFAULTS,
        )
        setup_components(ctx, rewards + judges, base, tokenizer, trainer.accelerator.device)
        attach_progress(trainer, ctx, ("reward", "kl"))
        evaluation = TRLPolicyEvaluation(ctx, self.config, trainer, held_out, rewards=rewards, judges=judges)
        results = {**run_info(ctx, base), "prompts": len(prompts), "eval_prompts": evaluation.prompts}
        results.update(evaluation.run(0, "before"))
        with generation_defaults_off(trainer.model):  # TRL's GenerationConfig would inherit the model's processors
            train_output = trainer.train()
        results.update(evaluation.run(trainer.state.global_step, "after"))
        results.update(train_loss=float(train_output.training_loss), steps=trainer.state.global_step)
        results.update(training_summary(trainer.state.log_history))
        results.update(peak_memory())
        save_trained(trainer, ctx, base, tokenizer, "AutoModelForCausalLM")
        return results


def training_summary(log_history: list[dict]) -> dict:
    """Mean training reward (and KL, when logged) over the first and last few logged steps."""
    train = [r for r in log_history if "reward" in r]
    if not train:
        return {}
    k = max(1, min(10, len(train) // 4))

    def mean(rows, key):
        values = [r[key] for r in rows if key in r]
        return sum(values) / len(values) if values else None

    summary = {"train_reward_first_steps": mean(train[:k], "reward"), "train_reward_last_steps": mean(train[-k:], "reward")}
    if any("kl" in r for r in train):
        summary["kl_last_steps"] = mean(train[-k:], "kl")
    return summary
