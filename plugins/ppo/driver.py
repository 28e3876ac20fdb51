"""Drive a :class:`PPOLoop` for the ``ppo`` stage: resume, evaluate, checkpoint, save."""

from __future__ import annotations

import json
from pathlib import Path

from rlhf_plug.checkpoints import drop_records_after, usable_checkpoint
from rlhf_plug.preemption import Preempted, stop_requested
from rlhf_plug.stage import ADAPTER_DIR, METRICS_FILE, MODEL_DIR
from rlhf_plug.tracking import finish_trackers, log_tables, prefixed, start_trackers
from rlhf_plug_plugins.ppo.saved_state import checkpoint_dirs, load_checkpoint, save_checkpoint
from rlhf_plug_plugins.ppo.evaluation import Evaluation
from rlhf_plug.policy.held_out import SAMPLES_DIR
from rlhf_plug.policy.held_out import write_tables as _write_tables

ROLLOUTS_FILE = "rollouts.jsonl"  # per step: the prompt rows used (all processes) and their rewards
SHOWN = ("reward", "kl", "beta", "clipfrac")


def run_loop(ctx, loop, evaluators, held_out, info: dict) -> dict:
    from rlhf_plug.progress import make_progress, metrics_line

    args = loop.args
    start, results = _resume(ctx, loop)
    start_trackers(loop.accelerator, ctx, resumed_at=start, model=info["base_model"])
    if start == 0:
        results = {**info, "prompts": len(loop.prompts), "eval_prompts": 0 if held_out is None else min(len(held_out), args.eval_prompts)}
    evaluation = _evaluation(loop, held_out) if evaluators else None
    if start == 0:
        results.update(_evaluate(ctx, loop, evaluation, evaluators, 0, "before"))
    progress, task = make_progress(ctx, args.steps, start)
    try:
        for step in range(start, args.steps):
            metrics = loop.step(step)
            done = step + 1
            ctx.log_metrics(done, metrics)
            loop.accelerator.log(prefixed(metrics, "train"), step=done)
            _log_rollout(ctx, loop, done)
            if progress is not None:
                progress.update(task, completed=done, metrics=metrics_line(metrics, SHOWN))
            if args.eval_every and done % args.eval_every == 0 and done < args.steps:
                _evaluate(ctx, loop, evaluation, evaluators, done, None)
            # The last step is checkpointed too: a kill in the final evaluation or save loses no training.
            preempted = stop_requested()  # a collective: every process asks after every step
            if preempted or (args.save_every and done % args.save_every == 0):
                state = {**loop.state_dict(done), "results": results}
                save_checkpoint(ctx.output_dir, done, state, loop.actor_critic, loop.accelerator, args.keep_checkpoints)
            if preempted:
                raise Preempted(f"stage {ctx.name} stopped on SIGTERM after step {done} of {args.steps}, checkpoint saved")
    finally:
        if progress is not None:
            progress.stop()
    results.update(_evaluate(ctx, loop, evaluation, evaluators, args.steps, "after"))
    finish_trackers(loop.accelerator)
    results.update(_training_summary(ctx.output_dir / METRICS_FILE, args.steps))
    _save_final(ctx, loop, info["base_model"])
    return results


def _resume(ctx, loop) -> tuple[int, dict]:
    found = usable_checkpoint(checkpoint_dirs(ctx.output_dir), ctx.console if ctx.is_main_process else None)
    if found is None:
        return 0, {}
    state = load_checkpoint(found, loop.actor_critic, loop.accelerator)
    step = loop.load_state_dict(state)
    if ctx.is_main_process:
        for name in (METRICS_FILE, ROLLOUTS_FILE):
            drop_records_after(ctx.output_dir / name, step, ctx.console)
        ctx.console.print(f"  [bold]resuming[/] from checkpoint {found.name} (step {step} of {loop.args.steps})")
    return step, dict(state.get("results", {}))


def _evaluation(loop, held_out):
    if held_out is None or len(held_out) == 0 or not loop.accelerator.is_main_process:
        return None
    rows = held_out.select(range(min(len(held_out), loop.args.eval_prompts)))
    columns = {c: list(rows[c]) for c in rows.column_names if c != "prompt"}
    return Evaluation(loop, list(rows["prompt"]), columns)


def _evaluate(ctx, loop, evaluation, evaluators, step: int, when: str | None) -> dict:
    """Run the evaluators on the main process; returns ``eval_<metric>_<when>`` for the results."""
    out = {}
    if evaluation is not None:
        metrics, tables = evaluation.run(step, evaluators)
        ctx.log_metrics(step, metrics, evaluation=True)
        _write_tables(ctx.output_dir / SAMPLES_DIR, step, tables)
        loop.accelerator.log(prefixed(metrics, "eval"), step=step)
        log_tables(loop.accelerator, tables, step)
        if when is not None:
            out = {f"eval_{k}_{when}": v for k, v in metrics.items()}
    loop.accelerator.wait_for_everyone()
    return out




def _log_rollout(ctx, loop, step: int) -> None:
    from accelerate.utils import gather_object

    roll = loop.last_rollout
    indices = gather_object([roll.indices])
    if ctx.is_main_process:
        record = {"step": step, "indices": indices}
        with open(ctx.output_dir / ROLLOUTS_FILE, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


def _training_summary(metrics_file: Path, steps: int) -> dict:
    """Mean reward and KL over the first and last few steps (from metrics.jsonl, so resumed runs count)."""
    if not metrics_file.is_file():
        return {}
    train = [json.loads(line) for line in metrics_file.read_text().splitlines() if line.strip()]
    train = [r for r in train if r.get("split") == "train"]
    if not train:
        return {}
    k = max(1, min(10, len(train) // 4))

    def mean(rows, key):
        values = [r[key] for r in rows if key in r]
        return sum(values) / len(values) if values else float("nan")

    return {
        "steps": train[-1]["step"],
        "train_reward_first_steps": mean(train[:k], "reward"),
        "train_reward_last_steps": mean(train[-k:], "reward"),
        "kl_last_steps": mean(train[-k:], "kl"),
        "beta_final": train[-1].get("beta"),
        **({"kl_target": train[-1]["kl_target"]} if "kl_target" in train[-1] else {}),
        **_gap_summary(train),
    }


def _gap_summary(train: list[dict]) -> dict:
    """The sampler-vs-trainer gap over the whole run: its mean over steps and its largest value."""
    means = [r["logprob_gap_mean"] for r in train if r.get("logprob_gap_mean") is not None]
    maxima = [r["logprob_gap_max"] for r in train if r.get("logprob_gap_max") is not None]
    if not means:
        return {}
    return {"logprob_gap_mean": sum(means) / len(means), "logprob_gap_max": max(maxima)}


def _save_final(ctx, loop, base: str) -> None:
    """``adapter/`` (the policy LoRA), ``value_head.safetensors`` and the merged ``model/``."""
    from safetensors.torch import save_file

    from rlhf_plug.disk_space import check_free_space
    from rlhf_plug.models import merge_adapter
    from rlhf_plug.training import saved_weights_bytes

    loop.accelerator.wait_for_everyone()
    if not ctx.is_main_process:
        return
    out = ctx.output_dir
    check_free_space(out, saved_weights_bytes(loop.actor_critic.causal_lm), "the trained policy")
    loop.actor_critic.peft.save_pretrained(str(out / ADAPTER_DIR), selected_adapters=["default"])
    loop.tokenizer.save_pretrained(out / ADAPTER_DIR)
    head = {k: v.detach().cpu().contiguous() for k, v in loop.actor_critic.value_head.state_dict().items()}
    save_file(head, str(out / "value_head.safetensors"))
    # checkpoints/ stays until the runner has swapped this folder into place: a kill while the final
    # model is written resumes from the last checkpoint, not from step 0.
    if getattr(loop.actor_critic.causal_lm, "is_loaded_in_4bit", False):
        merge_adapter(base, out / ADAPTER_DIR, out / MODEL_DIR, "AutoModelForCausalLM", loop.tokenizer)
        return
    # Training is over: merge the policy into the in-memory base instead of loading a second copy.
    merged = loop.actor_critic.peft.merge_and_unload(adapter_names=["default"])
    merged.config.pad_token_id = loop.tokenizer.pad_token_id
    merged.save_pretrained(out / MODEL_DIR, safe_serialization=True)
    loop.tokenizer.save_pretrained(out / MODEL_DIR)
