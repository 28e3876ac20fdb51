"""Log-probabilities of the response tokens under the distribution the sampler drew them from.

The trainer does not call the model's own forward for its logits: it runs the trunk once
(shared prefix, checkpointing) and applies the LM head only at response positions. So
whatever a model family does to its logits after the LM head must be done here too, or the
trainer scores another distribution than the one sampled (Gemma 2 and 3 soft-cap the logits;
Cohere multiplies them; Granite divides them). :data:`LOGIT_TRANSFORMS` holds those, keyed by
the config attribute that switches them on. The list is not complete (Falcon-H1's
``lm_head_multiplier`` and MiniCPM's scaling are not in it); the per-step ``logprob_gap``
metric catches a family that does something else.

Top-k and top-p: the sampler draws from the truncated, renormalised distribution, so the
trainer scores with the same warpers on its own logits. The drawn token is always kept in the
support: float rounding between the sampler's incremental decoding and the trainer's full pass
could otherwise move a boundary token out and give it log-probability −∞.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _softcap(logits: torch.Tensor, cap: float) -> torch.Tensor:
    return torch.tanh(logits / cap) * cap


LOGIT_TRANSFORMS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "final_logit_softcapping": _softcap,  # Gemma 2, Gemma 3
    "logit_scale": lambda logits, scale: logits * scale,  # Cohere, Cohere 2
    "logits_scaling": lambda logits, scale: logits / scale,  # Granite
}


def family_transforms(config) -> list[tuple[Callable, float]]:
    """The transforms ``config`` switches on, each with its setting (a text config for multimodal models)."""
    config = getattr(config, "get_text_config", lambda: config)()
    found = []
    for attribute, transform in LOGIT_TRANSFORMS.items():
        value = getattr(config, attribute, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value not in (0, 1):
            found.append((transform, float(value)))
    return found


TRUNCATION_CHUNK = 2**24  # logits per chunk when computing the top-k/top-p set: 64 MiB of fp32, 4x that while sorting


class ResponseScorer:
    """hidden states → (log π(token), entropy), with the sampler's temperature, truncation and the family's transforms."""

    def __init__(self, config, temperature: float, top_k: int = 0, top_p: float = 1.0):
        from rlhf_plug.policy.inverse_cdf import truncation_warpers

        self.temperature = temperature
        self.transforms = family_transforms(config)
        self.warpers = truncation_warpers(top_k, top_p)

    def logits(self, lm_head, hidden: torch.Tensor) -> torch.Tensor:
        logits = lm_head(hidden).float()
        for transform, value in self.transforms:
            logits = transform(logits, value)
        if self.temperature != 1.0:  # in place: no backward reads a matmul's, cast's or product's output; saves a copy
            logits.div_(self.temperature)
        return logits

    def __call__(self, lm_head, hidden: torch.Tensor, tokens: torch.Tensor, truncate: bool = True):
        from trl.trainer.utils import selective_log_softmax_and_entropy

        logits = self.logits(lm_head, hidden)
        if truncate and self.warpers:
            logits = self.truncated(logits, tokens)
        return selective_log_softmax_and_entropy(logits, tokens, entropy_requires_grad=False)

    def truncated(self, logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens outside the sampler's top-k/top-p set get the lowest finite logit (probability 0, entropy finite)."""
        vocab = logits.shape[-1]
        flat = logits.reshape(-1, vocab)
        removed = torch.empty(flat.shape, dtype=torch.bool, device=flat.device)
        rows = max(1, TRUNCATION_CHUNK // vocab)  # top-p sorts a copy with int64 indices: bound that memory
        with torch.no_grad():
            for start in range(0, flat.shape[0], rows):
                kept = flat[start : start + rows].detach().clone()
                for warper in self.warpers:
                    kept = warper(None, kept)
                removed[start : start + rows] = kept.isneginf()
            removed.scatter_(1, tokens.reshape(-1, 1), False)
        return flat.masked_fill(removed, torch.finfo(flat.dtype).min).view_as(logits)
