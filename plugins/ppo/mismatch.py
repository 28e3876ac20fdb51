"""The sampler-vs-trainer invariant: the tokens a rollout draws come from the distribution the trainer scores.

At rollout the sampler keeps each drawn token's log-probability under the distribution it
was drawn from (:class:`rlhf_plug.policy.inverse_cdf.InverseCdfSampler`); the trainer's
old log-probability of the same token comes from the first training-mode pass. Their gap,
``|log p_sampler − log π_old|`` over response tokens, is logged every step as
``logprob_gap_mean`` and ``logprob_gap_max``. In fp32 on CPU they differ by float rounding
only (incremental decoding with a KV cache against one full pass; merged or packed weights
against peft's unmerged forward); bf16 autocast or a 4-bit base widen it; a logits processor,
a warper or a dropout mask that one side applies and the other does not makes it large,
which is training off-policy without a sign (the "training-inference mismatch" that verl's
rollout correction and ms-swift measure; our sampler and trainer are one engine, so we make
it zero where the arithmetic allows and measure it everywhere).

:func:`truncated_importance_weights` is the correction for what remains (truncated importance
sampling, Yao et al. 2025, verl's TIS): each token's advantage is multiplied by
``min(π_old / p_sampler, cap)``. For losses positively homogeneous in the advantage (PPO-clip,
REINFORCE) that is the per-token loss weighted as TIS prescribes, since
``min(r·wA, clip(r)·wA) = w·min(r·A, clip(r)·A)`` for ``w > 0``. The KL term of
``kl_penalty: loss`` is not weighted.
"""

from __future__ import annotations

import torch


def logprob_gap(sampler_logprobs: torch.Tensor, trainer_logprobs: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """``logprob_gap_mean`` and ``logprob_gap_max`` over the response tokens (``mask`` 1)."""
    gap = (sampler_logprobs.to(trainer_logprobs.device) - trainer_logprobs).abs() * mask
    tokens = mask.sum().clamp(min=1)
    return {"logprob_gap_mean": float(gap.sum() / tokens), "logprob_gap_max": float(gap.max()) if gap.numel() else 0.0}


def truncated_importance_weights(
    sampler_logprobs: torch.Tensor, trainer_logprobs: torch.Tensor, mask: torch.Tensor, cap: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-token ``min(exp(log π_old − log p_sampler), cap)`` (1 off the response), and its mean and clipped fraction."""
    log_ratio = trainer_logprobs - sampler_logprobs.to(trainer_logprobs.device)
    raw = log_ratio.exp()
    weights = torch.where(mask.bool(), raw.clamp(max=cap), torch.ones_like(raw))
    tokens = mask.sum().clamp(min=1)
    return weights, {
        "is_weight_mean": float((weights * mask).sum() / tokens),
        "is_clipped_fraction": float(((raw > cap).float() * mask).sum() / tokens),
    }


def precision_of(causal_lm, autocast_dtype) -> str | None:
    """What makes sampler and trainer round differently beyond fp32 rounding (bf16 autocast, 16-bit weights,
    a 4-bit base computing in bf16), or None in plain fp32."""
    if autocast_dtype is not None:
        return f"{_name(autocast_dtype)} autocast"
    weights = next(p for p in causal_lm.parameters() if p.dtype.is_floating_point).dtype
    quantization = getattr(causal_lm.config, "quantization_config", None)
    compute = getattr(quantization, "bnb_4bit_compute_dtype", None) if quantization is not None else None
    if isinstance(quantization, dict):
        compute = quantization.get("bnb_4bit_compute_dtype")
    for dtype in (weights, compute):
        if dtype is not None and _name(dtype) != "float32":
            return f"{_name(dtype)} weights or compute"
    return None


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def default_threshold(precision: str | None) -> float:
    """``logprob_gap_max`` above which a step is off-policy beyond rounding (measured in docs/ppo.md):
    fp32 rounding stays below 1e-4 (7e-5 over 40 steps of SmolLM2), so 0.01 leaves a 100-fold margin;
    bf16 autocast reached 0.34 on SmolLM2 (0.06 on the tiny families), so 1.0 leaves about 3-fold;
    an unscored top-p or a missing soft cap gave 1.3 and 4.5."""
    return FP32_THRESHOLD if precision is None else LOW_PRECISION_THRESHOLD


FP32_THRESHOLD = 0.01
LOW_PRECISION_THRESHOLD = 1.0


def likely_cause(precision: str | None) -> str:
    """What most likely widened the gap, for the warning line."""
    if precision is not None:
        return f"{precision} (args.bf16=false scores in fp32; args.importance_sampling=truncated corrects it)"
    return (
        "in fp32 the two differ only by rounding, so something reshapes the sampled distribution that the trainer does "
        "not apply: a logits processor, a model family's logit transform, or dropout (please report the model and settings)"
    )


class GapMonitor:
    """Warns once, or with ``strict`` stops with a :class:`UserError` naming ``args.logprob_gap_strict``, when a
    step's ``logprob_gap_max`` (the largest over all processes) exceeds the threshold. Runs before the update."""

    def __init__(self, ctx, accelerator, threshold: float | None, strict: bool, precision: str | None):
        self.ctx, self.accelerator, self.strict, self.precision = ctx, accelerator, strict, precision
        self.threshold = threshold or default_threshold(precision)
        self.warned = False

    def check(self, gap: dict[str, float], step: int) -> None:
        if "logprob_gap_max" not in gap or (self.warned and not self.strict):
            return
        largest = gap["logprob_gap_max"]
        if self.accelerator.num_processes > 1:  # every process must stop at the same step
            local = torch.tensor([largest], dtype=torch.float64, device=self.accelerator.device)
            largest = float(self.accelerator.gather(local).max())
        if not largest > self.threshold:
            return
        text = (
            f"PPO step {step + 1}: logprob_gap_max {largest:.3g} > args.logprob_gap_threshold {self.threshold:g} "
            f"(mean {gap['logprob_gap_mean']:.3g}): the sampler drew from another distribution than the trainer "
            f"scores; likely cause: {likely_cause(self.precision)}"
        )
        if self.strict:
            raise self.ctx.error(("args", "logprob_gap_strict"), text + "; stopped before the update was applied")
        self.warned = True
        if self.accelerator.is_main_process:
            self.ctx.console.print(f"[yellow]warning:[/] {text}", soft_wrap=True, highlight=False)
