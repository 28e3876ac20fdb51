"""The PPO loop: rollout → score → advantages → update, one named step at a time."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from rlhf_plug_plugins.objectives.losses import masked_mean
from rlhf_plug_plugins.ppo import advantages as adv
from rlhf_plug_plugins.ppo import mismatch
from rlhf_plug_plugins.ppo.speed.heap import release_freed_memory
from rlhf_plug_plugins.ppo.speed.merged_generation import merge_plan
from rlhf_plug.policy.rewards import RewardComponent, call_reward
from rlhf_plug.policy.sampling import Rollout, sample
from rlhf_plug_plugins.ppo.schedule import PromptSchedule


@dataclass
class PPOLoop:
    ctx: Any  # StageContext
    config: Any  # PPOStageConfig
    accelerator: Any
    model: Any  # the ActorCritic, as prepared by accelerate (DDP-wrapped when distributed)
    actor_critic: Any  # the same module, unwrapped
    optimizer: Any
    scheduler: Any
    tokenizer: Any
    rewards: list[RewardComponent]
    judges: list[RewardComponent]
    kl_controller: Any
    loss: Any
    prompts: Any  # datasets.Dataset with a `prompt` column
    ptx_rows: Any = None  # datasets.Dataset with a `text` column, when ptx.coef > 0
    reward_stats: adv.RunningMoments = field(default_factory=adv.RunningMoments)

    def __post_init__(self) -> None:
        acc = self.accelerator
        self.args = self.config.args
        self.schedule = PromptSchedule(
            len(self.prompts), self.args.batch_size, acc.num_processes, self.ctx.seed, self.args.shuffle
        )
        self.updates_per_step = self.args.ppo_epochs * self.args.mini_batches
        if self.ptx_rows is not None:
            ptx = self.config.ptx
            self.ptx_schedule = PromptSchedule(len(self.ptx_rows), ptx.batch_size, acc.num_processes, self.ctx.seed + 1)
        bf16 = self.args.bf16 if self.args.bf16 is not None else (torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        self.autocast_dtype = torch.bfloat16 if bf16 else None
        self.merges, aside = merge_plan(self.actor_critic, self.args.merged_sampling, self.autocast_dtype)
        if aside and acc.is_main_process:
            self.ctx.console.print(f"  {aside}", soft_wrap=True, markup=False, highlight=False)
        precision = mismatch.precision_of(self.actor_critic.causal_lm, self.autocast_dtype)
        self.gap_monitor = mismatch.GapMonitor(
            self.ctx, acc, self.args.logprob_gap_threshold, self.args.logprob_gap_strict, precision
        )

    # --- helpers ---------------------------------------------------------
    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.accelerator.device.type, dtype=self.autocast_dtype)

    def _to_device(self, *tensors):
        return [t.to(self.accelerator.device) for t in tensors]

    def generate(self, prompts: list, adapter_on: bool = True) -> Rollout:
        from trl.models.utils import unwrap_model_for_generation

        from rlhf_plug_plugins.ppo.speed.merged_generation import sampling_weights
        from rlhf_plug_plugins.ppo.speed.prefix import generation_inputs

        with unwrap_model_for_generation(self.model, self.accelerator) as unwrapped, self.autocast():
            pack_rows = len(prompts) if self.args.packed_sampling else None
            with sampling_weights(unwrapped, adapter_on, self.merges, pack_rows):
                return sample(
                    unwrapped.peft, self.tokenizer, prompts, self.config.generation,
                    self.args.max_prompt_length, self.accelerator.device,
                    prefill=generation_inputs if self.args.share_prompt_prefix else None,
                )

    def _forward(self, role: str, roll: Rollout, **kwargs):
        """Passes with gradients go through the accelerate-prepared module (DDP); others skip its collectives."""
        model = self.model if torch.is_grad_enabled() else self.actor_critic
        input_ids, mask = self._to_device(roll.input_ids, roll.attention_mask)
        with self.autocast():
            return model(role=role, input_ids=input_ids, attention_mask=mask, prompt_length=roll.prompt_length, **kwargs)

    @torch.no_grad()
    def sequence_kl(self, roll: Rollout) -> torch.Tensor:
        """Σ_t (log π − log π_ref) per sample: the sequence KL estimate used for reporting and evaluation."""
        logprobs = self._forward("train", roll, with_values=False).logprobs
        ref = self._forward("reference", roll)
        mask = roll.response_mask.to(logprobs.device)
        return ((logprobs - ref) * mask).sum(1).cpu()

    # --- scoring ---------------------------------------------------------
    def score_all(self, prompts, completions, completion_ids, columns) -> dict[str, list[float]]:
        """Every reward component and judge on the same completions (evaluation)."""
        return {c.name: call_reward(c, None, prompts, completions, completion_ids, columns) for c in [*self.rewards, *self.judges]}

    def score(self, roll: Rollout, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted reward per sample (raw), plus per-component means for the log."""
        ids = roll.completion_ids()
        per_component = {}
        total = torch.zeros(len(roll.completions))
        for component in self.rewards:
            values = call_reward(component, step, roll.prompts, roll.completions, ids, roll.columns)
            per_component[f"reward/{component.name}"] = sum(values) / len(values)
            total += component.weight * torch.tensor(values)
        return total, per_component

    def normalise(self, scores: torch.Tensor, has_eos: torch.Tensor) -> torch.Tensor:
        """Normalise with running, frozen or batch statistics over all processes, clip to ±reward_clip, then
        subtract ``missing_eos_penalty`` from responses without EOS (after the statistics, so the penalty
        neither enters them nor is scaled by them)."""
        args = self.args
        everyone = self.accelerator.gather(scores.to(self.accelerator.device)).cpu()
        if args.reward_norm in ("running", "frozen"):
            if args.reward_norm == "running" or self.reward_stats.count < args.reward_norm_batches * len(everyone):
                self.reward_stats.update(everyone.tolist())
            scores = (scores - self.reward_stats.mean) / self.reward_stats.std
        elif args.reward_norm == "batch":
            scores = (scores - everyone.mean()) / (everyone.std() + 1e-8) if len(everyone) > 1 else scores * 0
        if args.reward_clip is not None:
            scores = scores.clamp(-args.reward_clip, args.reward_clip)
        if args.missing_eos_penalty is not None:
            scores = scores - args.missing_eos_penalty * (~has_eos).float()
        return scores

    # --- one step --------------------------------------------------------
    def collect(self, step: int) -> Rollout:
        indices = self.schedule.indices(step, self.accelerator.process_index)
        rows = self.prompts.select(indices)
        roll = self.generate(list(rows["prompt"]))
        roll.indices = indices
        roll.columns = {c: list(rows[c]) for c in rows.column_names if c != "prompt"}
        return roll

    def ptx_batch(self, update_index: int):
        if self.ptx_rows is None:
            return None
        from rlhf_plug.policy.sampling import right_pad

        rows = self.ptx_rows.select(self.ptx_schedule.indices(update_index, self.accelerator.process_index))
        limit = self.config.ptx.max_length
        ids = [self.tokenizer(text=t)["input_ids"][:limit] for t in rows["text"]]
        input_ids, mask = right_pad(ids, self.tokenizer.pad_token_id)
        input_ids, mask = self._to_device(input_ids, mask)
        return {"input_ids": input_ids, "attention_mask": mask}

    def step(self, step: int) -> dict[str, float]:
        """PPO step ``step`` (0-based): returns this step's metrics, averaged over processes."""
        t0 = time.perf_counter()
        roll = self.collect(step)
        t_gen = time.perf_counter() - t0
        raw, metrics = self.score(roll, step + 1)
        scores = self.normalise(raw, roll.has_eos)
        t_reward = time.perf_counter() - t0 - t_gen
        mask = roll.response_mask.to(self.accelerator.device)
        needs_value = getattr(self.loss, "needs_value", True)
        fused = self.updates_per_step == 1  # one epoch, one minibatch: the rollout forward is the training forward
        t1 = time.perf_counter()
        # While the policy adapter is still zero (the first step) the reference pass equals the policy's, bit for bit,
        # unless top-k/top-p truncate the policy's scoring (the reference keeps its full support).
        reference_is_policy = self.actor_critic.policy_is_identity() and not self.actor_critic.scorer.warpers
        if not reference_is_policy:
            with torch.no_grad():
                ref_logprobs = self._forward("reference", roll)
        t_reference = time.perf_counter() - t1
        t1 = time.perf_counter()
        if fused:
            first = self._forward("train", roll, with_values=needs_value, ptx=self.ptx_batch(step * self.updates_per_step))
        else:
            with torch.no_grad():
                first = self._forward("train", roll, with_values=needs_value)
        if self.args.release_freed_memory:  # the forward's freed temporaries, before the backward allocates
            release_freed_memory()
        old_logprobs = first.logprobs.detach()
        if reference_is_policy:
            ref_logprobs = old_logprobs
        gap = mismatch.logprob_gap(roll.sampler_logprobs, old_logprobs, mask) if roll.sampler_logprobs is not None else {}
        self.gap_monitor.check(gap, step)
        old_values = first.values.detach() if needs_value else torch.zeros_like(old_logprobs)
        kl = adv.kl_estimate(old_logprobs, ref_logprobs, self.args.kl_estimator) * mask
        beta = self.kl_controller.value
        kl_in_loss = self.args.kl_penalty == "loss"  # GRPO-style: β·KL is a loss term with its own gradient
        rewards = adv.token_rewards(scores.to(mask.device), kl, 0.0 if kl_in_loss else beta, mask)
        advantages, returns = adv.gae(rewards, old_values, mask, self.args.gamma, self.args.lam if needs_value else 1.0)
        if self.args.whiten_advantages:
            advantages = adv.whiten(advantages, mask)
        if self.args.importance_sampling == "truncated":
            weights, is_metrics = mismatch.truncated_importance_weights(
                roll.sampler_logprobs, old_logprobs, mask, self.args.importance_sampling_cap
            )
            advantages = advantages * weights
            gap.update(is_metrics)
        rollout_data = {
            "old_logprobs": old_logprobs, "old_values": old_values, "advantages": advantages,
            "returns": returns, "mask": mask, **({"ref_logprobs": ref_logprobs} if kl_in_loss else {}),
        }
        loss_metrics = self.optimise(roll, rollout_data, first if fused else None, step)
        self.scheduler.step()
        seq_kl = kl.sum(1)
        metrics.update({
            "reward": raw.mean().item(), "score": scores.mean().item(), "kl": seq_kl.mean().item(),
            "kl_penalty": (beta * seq_kl).mean().item(), "beta": beta,
            "entropy": masked_mean(first.entropy, mask).item(), "response_length": mask.sum(1).mean().item(),
            "eos_fraction": roll.has_eos.float().mean().item(), "lr": self.scheduler.get_last_lr()[0],
            **gap, **loss_metrics,
        })
        if needs_value:
            metrics["explained_variance"] = adv.explained_variance(old_values, returns, mask)
        if getattr(self.kl_controller, "target", None) is not None:  # a controller with a set-point: the KL budget
            metrics["kl_target"] = float(self.kl_controller.target)
        metrics = self._average(metrics)  # a non-finite value (no explained variance yet) is logged as null
        self.kl_controller.update(metrics["kl"], self.args.batch_size * self.accelerator.num_processes)
        metrics.update({
            "time/rollout": t_gen, "time/reward": t_reward, "time/reference": t_reference,
            "time/update": time.perf_counter() - t1, "time/step": time.perf_counter() - t0,
        })
        self.last_rollout = roll
        return metrics

    def optimise(self, roll: Rollout, data: dict, fused_out, step: int) -> dict[str, float]:
        """PPO epochs over minibatches; returns the mean of the loss metrics."""
        args, acc = self.args, self.accelerator
        totals: dict[str, float] = {}
        size = len(roll.completions)
        per_mb = max(1, size // args.mini_batches)
        update = 0
        for _ in range(args.ppo_epochs):
            order = torch.randperm(size)
            for start in range(0, size, per_mb):
                rows = order[start : start + per_mb]
                ptx = None
                if fused_out is not None:
                    out, batch = fused_out, data
                else:
                    ptx = self.ptx_batch(step * self.updates_per_step + update)
                    out = self._forward("train", roll.select(rows), with_values=getattr(self.loss, "needs_value", True), ptx=ptx)
                    batch = {k: v[rows.to(v.device)] for k, v in data.items()}
                loss, metrics = self.loss({**batch, "logprobs": out.logprobs, "values": out.values})
                if "ref_logprobs" in batch:  # kl_penalty: loss
                    kl_loss = masked_mean(adv.kl_estimate(out.logprobs, batch["ref_logprobs"], args.kl_estimator), batch["mask"])
                    loss = loss + self.kl_controller.value * kl_loss
                    metrics["kl_loss"] = kl_loss.item()
                if out.lm_loss is not None:
                    loss = loss + self.config.ptx.coef * out.lm_loss
                    metrics["ptx_loss"] = out.lm_loss.item()
                acc.backward(loss)
                if args.max_grad_norm is not None:
                    metrics["grad_norm"] = float(acc.clip_grad_norm_(self.actor_critic.parameters(), args.max_grad_norm))
                self.check_update(loss, step)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                for k, v in metrics.items():
                    totals[k] = totals.get(k, 0.0) + v / self.updates_per_step
                update += 1
        return totals

    def check_update(self, loss: torch.Tensor, step: int) -> None:
        """Stop before an optimizer step that would make the weights non-finite (NaN logits at the next sampling).

        After the backward pass the gradients agree across processes, so every process stops at the same update.
        """
        grads = [p.grad.isfinite().all() for p in self.actor_critic.parameters() if p.grad is not None]
        finite_grads = bool(torch.stack(grads).all()) if grads else True  # one device sync, not one per tensor
        if finite_grads and math.isfinite(loss.item()):
            return
        raise self.ctx.error(
            ("loss",),
            f"loss '{self.config.loss.use}' at PPO step {step + 1} is {loss.item():.4g}"
            f"{'' if finite_grads else ' with non-finite gradients'}; stopped before the update was applied, "
            "the last checkpoint is kept (lower args.learning_rate or check the reward scale, then --resume)",
        )

    def _average(self, metrics: dict[str, float]) -> dict[str, float]:
        """Mean over processes; a ``*_max`` metric takes the maximum."""
        if self.accelerator.num_processes == 1:
            return metrics
        keys = sorted(metrics)
        values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=self.accelerator.device)
        every = self.accelerator.gather(values.unsqueeze(0)).view(-1, len(keys))
        highest = torch.tensor([k.endswith("_max") for k in keys], device=every.device)
        return dict(zip(keys, torch.where(highest, every.max(0).values, every.mean(0)).tolist()))

    # --- checkpoint state -------------------------------------------------
    def state_dict(self, step: int) -> dict:
        return {
            "step": step, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "kl_controller": self.kl_controller.state_dict(), "reward_stats": self.reward_stats.state_dict(),
            "data_position": (step * self.args.batch_size * self.accelerator.num_processes),
        }

    def load_state_dict(self, state: dict) -> int:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.kl_controller.load_state_dict(state["kl_controller"])
        self.reward_stats.load_state_dict(state["reward_stats"])
        return int(state["step"])

