"""Policy-optimisation losses for the PPO stage.

Each loss is a callable ``(batch) -> (loss, metrics)``. ``batch`` holds
per-token tensors of shape ``[B, T]``: ``logprobs`` (current policy),
``old_logprobs`` (at rollout), ``advantages``, ``mask`` (1 on response tokens)
and, for losses with a critic, ``values``, ``old_values`` and ``returns``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from rlhf_plug import hookimpl

Positive = Annotated[float, Field(gt=0)]


def masked_mean(x, mask):
    return (x * mask).sum() / mask.sum().clamp(min=1)


class PPOClipLoss:
    """PPO-clip policy loss plus the clipped value loss (Schulman et al. 2017)."""

    needs_value = True

    def __init__(self, cliprange: Positive = 0.2, cliprange_value: Positive = 0.2, vf_coef: Annotated[float, Field(ge=0)] = 0.1):
        self.cliprange = cliprange
        self.cliprange_value = cliprange_value
        self.vf_coef = vf_coef

    def __call__(self, batch):
        import torch

        mask = batch["mask"]
        log_ratio = batch["logprobs"] - batch["old_logprobs"]
        ratio = torch.exp(log_ratio)
        adv = batch["advantages"]
        pg_unclipped = -adv * ratio
        pg_clipped = -adv * torch.clamp(ratio, 1 - self.cliprange, 1 + self.cliprange)
        pg_loss = masked_mean(torch.max(pg_unclipped, pg_clipped), mask)
        values, old_values, returns = batch["values"], batch["old_values"], batch["returns"]
        values_clipped = old_values + torch.clamp(values - old_values, -self.cliprange_value, self.cliprange_value)
        vf_loss = 0.5 * masked_mean(torch.max((values - returns) ** 2, (values_clipped - returns) ** 2), mask)
        loss = pg_loss + self.vf_coef * vf_loss
        with torch.no_grad():
            metrics = {
                "pg_loss": pg_loss.item(),
                "vf_loss": vf_loss.item(),
                "clipfrac": masked_mean((pg_clipped > pg_unclipped).float(), mask).item(),
                "vf_clipfrac": masked_mean(((values - returns) ** 2 < (values_clipped - returns) ** 2).float(), mask).item(),
                "approx_kl": masked_mean(0.5 * log_ratio**2, mask).item(),
            }
        return loss, metrics


class ReinforceLoss:
    """Critic-free policy gradient with an importance ratio: REINFORCE on the reward-to-go (per-token KL
    included), whose whitening over the batch is the only baseline (OpenRLHF calls this REINFORCE++).

    Not RLOO: the ppo stage samples one answer per prompt, so there is no leave-one-out baseline; use the
    ``rloo`` stage (TRL's RLOOTrainer) for that.
    """

    needs_value = False

    def __call__(self, batch):
        import torch

        mask = batch["mask"]
        log_ratio = batch["logprobs"] - batch["old_logprobs"]
        ratio = torch.exp(log_ratio)
        loss = masked_mean(-batch["advantages"] * ratio, mask)
        with torch.no_grad():
            metrics = {"pg_loss": loss.item(), "approx_kl": masked_mean(0.5 * log_ratio**2, mask).item()}
        return loss, metrics


@hookimpl
def rlhf_register_losses(register):
    register("ppo_clip", PPOClipLoss)
    register("reinforce", ReinforceLoss)
