"""Assemble a :class:`PPOLoop` from a stage context: model, components, optimiser."""

from __future__ import annotations

from rlhf_plug.policy.rewards import RewardComponent, RewardSetup, setup_rewards


def build_loop(ctx, config, prompts, ptx_rows):
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    from rlhf_plug.models import load_tokenizer
    from rlhf_plug.tracking import accelerator_kwargs
    from rlhf_plug.training import run_info
    from rlhf_plug_plugins.ppo.actor_critic import build_actor_critic
    from rlhf_plug_plugins.ppo.loop import PPOLoop

    # glibc's default malloc settings: a fixed 1 MiB mmap threshold (tried before) made every activation a
    # fresh mmap with page faults, 1.6x slower per update at 320-token sequences (benchmarks/RESULTS.md).
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), **accelerator_kwargs(ctx))
    set_seed(ctx.seed + accelerator.process_index)  # each process samples differently
    args = config.args
    loss = ctx.build("loss", config.loss, ("loss",))
    needs_value = getattr(loss, "needs_value", True)
    base = ctx.model_path(default_from=("sft",))
    tokenizer = load_tokenizer(base)
    actor_critic = build_actor_critic(
        base, ctx.quantization, config.lora, args.value_model if needs_value else "trunk",
        config.generation.temperature, accelerator.device, args.gradient_checkpointing, args.activation_budget_gib,
        top_k=config.generation.top_k, top_p=config.generation.top_p,
    )
    actor_critic.share_prefix = args.share_prompt_prefix
    actor_critic.release_memory = args.release_freed_memory
    actor_critic.notice = notice_once(ctx)
    if args.lean_activations:
        patched = actor_critic.keep_lean_activations()
        if not patched["mlps"] or not patched["norms"]:
            kind = actor_critic.causal_lm.config.model_type
            actor_critic.notice(
                f"lean_activations steps aside in part for {kind}: {patched['mlps']} plain SwiGLU MLPs and "
                f"{patched['norms']} RMSNorms to recompute; the other layers keep their activations"
            )
    if not needs_value:
        actor_critic.value_head.requires_grad_(False)
    rewards = _components(ctx, config.reward, "reward")
    judges = _components(ctx, config.judges, "judges")
    setup_rewards(
        rewards + judges,
        lambda c: RewardSetup(ctx, base, actor_critic, tokenizer, accelerator.device, c.key),
    )
    trainable = [p for p in actor_critic.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=args.weight_decay)
    scheduler = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=args.warmup_steps, num_training_steps=args.steps)
    model, optimizer = accelerator.prepare(actor_critic, optimizer)
    loop = PPOLoop(
        ctx=ctx, config=config, accelerator=accelerator, model=model, actor_critic=actor_critic,
        optimizer=optimizer, scheduler=scheduler, tokenizer=tokenizer, rewards=rewards, judges=judges,
        kl_controller=ctx.build("kl_controller", config.kl, ("kl",)), loss=loss, prompts=prompts, ptx_rows=ptx_rows,
    )
    evaluators = [ctx.build("evaluator", ref, ("evaluators", i)) for i, ref in enumerate(config.evaluators)]
    info = {
        **run_info(ctx, base),
        "value_model": args.value_model if needs_value else "none",
        "rewards_sharing_base": [c.name for c in rewards + judges if getattr(c.fn, "shared", False)],
        "trainable_parameters": sum(p.numel() for p in trainable),
    }
    return loop, evaluators, info


def notice_once(ctx):
    """``say(text)``: print ``text`` once per stage, on the main process (a speed feature stepping aside)."""
    said: set[str] = set()

    def say(text: str) -> None:
        if text not in said and ctx.is_main_process:
            said.add(text)
            ctx.console.print(f"  {text}", soft_wrap=True, markup=False, highlight=False)

    return say


def _components(ctx, refs, key: str) -> list[RewardComponent]:
    return [
        RewardComponent(
            name=ref.label, label=f"{key}[{i}] '{ref.label}'", fn=ctx.build("reward_function", ref, (key, i)),
            weight=getattr(ref, "weight", 1.0), key=(key, i),
        )
        for i, ref in enumerate(refs)
    ]
