"""Drawing the next token with one uniform number per row (inverse-CDF sampling).

``generate(do_sample=True)`` draws with ``torch.multinomial``, which on CPU races one
exponential variate per vocabulary entry: 393,216 random numbers a step for 8 rows of
SmolLM2's 49,152 tokens, about 8 ms, so 0.25 s of a 32-token rollout. A float64 cumulative
sum and a binary search need one uniform per row and take about 1 ms. The distribution
is the same, softmax of the warped logits, so the PPO ratio's log π stays exact; the
draws for a given seed differ from ``multinomial``'s.

It runs as the last logits processor of a greedy ``generate``: it applies transformers'
own temperature, top-k and top-p warpers, draws, and returns scores whose argmax is
the drawn token. It also keeps the log-probability of each drawn token under the
distribution it was drawn from (after every processor and warper): the PPO loop
compares it with the trainer's log-probability of the same token (``logprob_gap``).
"""

from __future__ import annotations

import torch


def truncation_warpers(top_k: int, top_p: float) -> list:
    """transformers' top-k and top-p warpers, in ``generate``'s order; the trainer scores with the same ones."""
    from transformers import TopKLogitsWarper, TopPLogitsWarper

    warpers = []
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    return warpers


class InverseCdfSampler:
    """A ``LogitsProcessor``: warps like ``generate(do_sample=True)``, then draws one token per row.

    ``logprobs`` collects, per step, each row's log-probability of its drawn token ([B] float32).
    """

    def __init__(self, temperature: float, top_k: int, top_p: float):
        from transformers import TemperatureLogitsWarper

        self.warpers = [TemperatureLogitsWarper(temperature)] if temperature != 1.0 else []
        self.warpers += truncation_warpers(top_k, top_p)
        self.logprobs: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        token = draw(scores)
        self.logprobs.append(scores.float().log_softmax(-1).gather(1, token.unsqueeze(1)).squeeze(1))
        return torch.full_like(scores, float("-inf")).scatter_(1, token.unsqueeze(1), 0.0)

    def drawn_logprobs(self) -> torch.Tensor:
        """``[B, steps]`` on the CPU: the log-probabilities the tokens were drawn with."""
        return torch.stack(self.logprobs, 1).cpu() if self.logprobs else torch.zeros(0, 0)


def draw(scores: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row from ``softmax(scores)``: the first whose cumulative probability exceeds a uniform draw.

    A token of probability zero (a ``-inf`` score) adds nothing to the sum, so it can never be the first to pass it.
    """
    cdf = scores.float().softmax(-1).cumsum(-1, dtype=torch.float64)
    uniform = torch.rand((scores.shape[0], 1), dtype=torch.float64, device=scores.device, generator=generator)
    token = torch.searchsorted(cdf, uniform * cdf[:, -1:], right=True)
    return token.squeeze(1).clamp_(max=scores.shape[-1] - 1)
