"""The ``ppo`` stage (InstructGPT step 3): our PPO engine against pluggable rewards.

Maximises ``E[r(x,y)] − β·KL(π‖π_SFT) + γ·E_pretrain[log π(x)]`` where r is
the weighted sum of the recipe's reward functions, β comes from the KL
controller component and γ is ``ptx.coef``. See :mod:`rlhf_plug_plugins.ppo`.
"""

from __future__ import annotations

import math
import os

from rlhf_plug import hookimpl
from rlhf_plug_plugins.ppo.config import PPOStageConfig
from rlhf_plug.policy.rewards import check_reward_refs

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
        _check_adapter_off_is_reference(ctx, config.lora)
        ctx.check_lora("CAUSAL_LM")
        ctx.check_model(default_from=("sft",))
        _check_scheduler(ctx, config.args.lr_scheduler)
        if config.args.batch_size % config.args.mini_batches:
            raise ctx.error(
                ("args", "mini_batches"),
                f"batch_size ({config.args.batch_size}) must be a multiple of mini_batches ({config.args.mini_batches})",
            )
        check_reward_refs(ctx, config)  # the same check as the TRL policy stages
        _notice_kl_settings(ctx, config, ctx.build("kl_controller", config.kl, ("kl",)))
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
        from rlhf_plug_plugins.stages.peak_memory import peak_memory, reset_peak_memory
        from rlhf_plug_plugins.ppo.speed.cpu_attention import grouped_attention_on_cpu
        from rlhf_plug_plugins.ppo.build import build_loop
        from rlhf_plug_plugins.ppo.driver import run_loop

        reset_peak_memory()
        prompts, held_out = self._load_prompts(ctx)
        ptx_rows = None
        if self.config.ptx.coef > 0:
            ptx_rows = ctx.load_data(self.config.ptx.data, ("ptx", "data"), PTX_FORMATS).train
        loop, evaluators, info = build_loop(ctx, self.config, prompts, ptx_rows)
        with grouped_attention_on_cpu(loop.accelerator.device):
            summary = run_loop(ctx, loop, evaluators, held_out, info)
        return {**summary, **peak_memory()}


# LoRA options under which "adapters off" is no longer the SFT model, or merged sampling drops part of the policy:
# the reference and a reward adapter sharing the base would drift with the policy. Key -> why, for the one-line refusal.
_INIT_REWRITES_BASE = ("pissa", "olora", "corda", "loftq")  # EVA only initialises A: the base stays


def _lora_breaks_reference(options: dict) -> tuple[str, str] | None:
    bias = options.get("bias", "none")
    if bias != "none":
        return "bias", f"bias '{bias}' trains the base model's biases, which the reference and the reward share; use 'none'"
    init = options.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(_INIT_REWRITES_BASE):
        return "init_lora_weights", (
            f"'{init}' rewrites the base weights, so adapters off is no longer the SFT model (the reference); "
            "use true or 'gaussian'"
        )
    for key in ("modules_to_save", "trainable_token_indices"):
        if options.get(key):
            return key, (
                f"{key} trains copies of base modules outside the adapter, which merged sampling and the reference "
                "do not see; leave it unset"
            )
    return None


def _check_adapter_off_is_reference(ctx, lora) -> None:
    """The policy and value adapters must leave the shared base untouched (one line naming the key otherwise)."""
    found = _lora_breaks_reference(lora) if isinstance(lora, dict) else None
    if found:
        key, why = found
        raise ctx.error(("lora", key), f"the ppo stage cannot use lora.{key}: {why}")


def _notice_kl_settings(ctx, config, controller) -> None:
    """One line for each KL setting that does not do what its name suggests (docs/ppo.md)."""
    args, notes = config.args, []
    if args.kl_estimator != "k1" and args.kl_penalty == "reward":
        notes.append(
            f"args.kl_estimator {args.kl_estimator} in the reward gives a biased policy gradient"
            + (" and a KL that is not in nats, so the adaptive target means something else" if getattr(controller, "target", None) else "")
            + "; use k1, or kl_penalty: loss with k2 (or k3, as GRPO)"
        )
    if args.kl_estimator == "k1" and args.kl_penalty == "loss":
        notes.append(
            "args.kl_estimator k1 in the loss has a gradient of mean zero on the policy's own samples, so the KL term "
            "does nothing but add noise; use k2 (the gradient of KL(pi||pi_ref)) or k3 (GRPO's)"
        )
    horizon = getattr(controller, "horizon", None)
    if horizon:  # Ziegler's update: β changes by at most a factor (1 ± 0.2·n/horizon) per step, n samples a step
        samples = args.batch_size * max(1, int(os.environ.get("WORLD_SIZE", "1")))  # set under accelerate launch
        most = (1 + 0.2 * samples / horizon) ** args.steps - 1
        if most < 0.1:
            doubling = max(1, round(0.2 * samples * args.steps / math.log(2)))
            notes.append(
                f"kl.with.horizon {horizon} with {samples} samples a step lets beta move at most {most:.1%} over "
                f"{args.steps} steps: effectively fixed; horizon {doubling} lets it move up to 2x, or use kl: {{use: fixed}}"
            )
    for note in notes:
        ctx.console.print(f"[yellow]notice:[/] stage {ctx.name}: {note}", soft_wrap=True, highlight=False)


def _check_scheduler(ctx, name: str) -> None:
    from transformers import SchedulerType

    options = [s.value for s in SchedulerType]
    if name not in options:
        raise ctx.error(("args", "lr_scheduler"), f"unknown scheduler '{name}'; expected one of: {', '.join(options)}")


@hookimpl
def rlhf_register_stages(register):
    register("ppo", PPOStage, config=PPOStageConfig)
