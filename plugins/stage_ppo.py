"""The ``ppo`` stage (InstructGPT step 3): our PPO engine against pluggable rewards.

Maximises ``E[r(x,y)] − β·KL(π‖π_SFT) + γ·E_pretrain[log π(x)]`` where r is
the weighted sum of the recipe's reward functions, β comes from the KL
controller component and γ is ``ptx.coef``. See :mod:`rlhf_plug_plugins.ppo`.
"""

from __future__ import annotations

from rlhf_plug import hookimpl
from rlhf_plug_plugins.ppo.config import PPOStageConfig
from rlhf_plug_plugins.ppo.rewards import check_reward_refs

PROMPT_FORMATS = ("prompt_only", "prompt_completion")
PTX_FORMATS = ("language_modeling",)


class PPOStage:
    """PPO with a KL penalty to the SFT model, one shared base model (LoRA), optional PPO-ptx."""

    def __init__(self, config: PPOStageConfig):
        self.config = config

    # --- check -------------------------------------------------------------
    def check(self, ctx) -> None:
        from rlhf_plug.tracking import accelerate_trackers

        config = self.config
        accelerate_trackers(ctx)  # our loop logs through accelerate's trackers
        if config.lora is False:
            raise ctx.error(("lora",), "the ppo stage trains a LoRA policy on a shared base; `lora: false` is not supported")
        ctx.check_lora("CAUSAL_LM")
        ctx.check_model(default_from=("sft",))
        _check_scheduler(ctx, config.args.lr_scheduler)
        if config.args.batch_size % config.args.mini_batches:
            raise ctx.error(
                ("args", "mini_batches"),
                f"batch_size ({config.args.batch_size}) must be a multiple of mini_batches ({config.args.mini_batches})",
            )
        check_reward_refs(ctx, config)  # the same check as the TRL policy stages
        ctx.component("kl_controller", config.kl, ("kl",))
        ctx.component("loss", config.loss, ("loss",))
        for i, ref in enumerate(config.evaluators):
            ctx.component("evaluator", ref, ("evaluators", i))
        self._load_prompts(ctx)
        if config.ptx.coef > 0:
            if config.ptx.data is None:
                raise ctx.error(("ptx", "data"), "ptx.coef > 0 needs a pretraining data source")
            ctx.load_data(config.ptx.data, ("ptx", "data"), PTX_FORMATS)

    def _load_prompts(self, ctx):
        split = ctx.load_data(self.config.prompts, ("prompts",), PROMPT_FORMATS)
        held_out = split.eval
        if self.config.eval_prompts is not None:
            held_out = ctx.load_data(self.config.eval_prompts, ("eval_prompts",), PROMPT_FORMATS).train
        return split.train, held_out

    # --- run ---------------------------------------------------------------
    def run(self, ctx) -> dict:
        from rlhf_plug_plugins.peak_memory import peak_memory, reset_peak_memory
        from rlhf_plug_plugins.ppo.cpu_attention import grouped_attention_on_cpu
        from rlhf_plug_plugins.ppo.setup import build_loop
        from rlhf_plug_plugins.ppo.stage_run import run_loop

        reset_peak_memory()
        prompts, held_out = self._load_prompts(ctx)
        ptx_rows = None
        if self.config.ptx.coef > 0:
            ptx_rows = ctx.load_data(self.config.ptx.data, ("ptx", "data"), PTX_FORMATS).train
        loop, evaluators, info = build_loop(ctx, self.config, prompts, ptx_rows)
        with grouped_attention_on_cpu(loop.accelerator.device):
            summary = run_loop(ctx, loop, evaluators, held_out, info)
        return {**summary, **peak_memory()}


def _check_scheduler(ctx, name: str) -> None:
    from transformers import SchedulerType

    options = [s.value for s in SchedulerType]
    if name not in options:
        raise ctx.error(("args", "lr_scheduler"), f"unknown scheduler '{name}'; expected one of: {', '.join(options)}")


@hookimpl
def rlhf_register_stages(register):
    register("ppo", PPOStage, config=PPOStageConfig)
