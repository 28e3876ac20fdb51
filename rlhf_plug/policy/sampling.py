"""Sampling responses: left-padded prompts in, EOS-truncated responses out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Rollout:
    prompt_ids: torch.Tensor  # [B, P], left-padded
    prompt_mask: torch.Tensor  # [B, P]
    response_ids: torch.Tensor  # [B, R], pad after the first EOS
    response_mask: torch.Tensor  # [B, R] float, 1 up to and including the first EOS
    has_eos: torch.Tensor  # [B] bool
    prompts: list[Any]  # as in the data: text or a list of messages
    completions: list[Any]  # text, or [{"role": "assistant", "content": ...}] for conversational prompts
    indices: list[int] = field(default_factory=list)  # row numbers in the prompt dataset
    columns: dict[str, list] = field(default_factory=dict)  # the prompt rows' other columns
    # [B, R] log-probability of each response token under the distribution the sampler drew it from; 0 after EOS
    sampler_logprobs: torch.Tensor | None = None

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.prompt_mask, self.response_mask.long()], dim=1)

    @property
    def prompt_length(self) -> int:
        return self.prompt_ids.shape[1]

    def completion_ids(self) -> list[list[int]]:
        """Response token ids without padding (EOS kept), as TRL passes ``completion_ids``."""
        return [r[: int(m.sum())].tolist() for r, m in zip(self.response_ids, self.response_mask)]

    def select(self, rows: torch.Tensor) -> Rollout:
        picked = rows.tolist()
        return Rollout(
            self.prompt_ids[rows], self.prompt_mask[rows], self.response_ids[rows], self.response_mask[rows],
            self.has_eos[rows], [self.prompts[i] for i in picked], [self.completions[i] for i in picked],
            [self.indices[i] for i in picked] if self.indices else [],
            {k: [v[i] for i in picked] for k, v in self.columns.items()},
            None if self.sampler_logprobs is None else self.sampler_logprobs[rows],
        )


def prompt_token_ids(tokenizer, prompt: Any) -> list[int]:
    """Chat template with the generation prompt for messages; plain tokenisation for text."""
    if isinstance(prompt, list):
        return list(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])
    return list(tokenizer(text=prompt)["input_ids"])


def left_pad(sequences: list[list[int]], pad_id: int, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad (and left-truncate to ``max_length``, keeping the end of each prompt)."""
    sequences = [s[-max_length:] for s in sequences]
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(seq)
            mask[row, width - len(seq) :] = 1
    return ids, mask


def right_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids, mask


def truncate_after_eos(response_ids: torch.Tensor, eos_id: int, pad_id: int):
    """Keep tokens up to and including the first EOS; return ``(ids, mask, has_eos)``."""
    is_eos = response_ids == eos_id
    has_eos = is_eos.any(dim=1)
    first = torch.where(has_eos, is_eos.float().argmax(dim=1), torch.full_like(has_eos, response_ids.shape[1], dtype=torch.long))
    positions = torch.arange(response_ids.shape[1], device=response_ids.device).unsqueeze(0)
    mask = (positions <= first.unsqueeze(1)).float()
    return response_ids.masked_fill(mask == 0, pad_id), mask, has_eos


def decode_completions(tokenizer, prompts: list[Any], response_ids: torch.Tensor, mask: torch.Tensor) -> list[Any]:
    """Response text without EOS/padding, shaped like the prompt (messages in, messages out)."""
    texts = [
        tokenizer.decode(ids[: int(m.sum())].tolist(), skip_special_tokens=True).strip()
        for ids, m in zip(response_ids.cpu(), mask.cpu())
    ]
    return [[{"role": "assistant", "content": t}] if isinstance(p, list) else t for p, t in zip(prompts, texts)]


@torch.no_grad()
def sample(policy, tokenizer, prompts: list[Any], generation, max_prompt_length: int, device, prefill=None) -> Rollout:
    """Sample one response per prompt from ``policy`` (a causal LM, dropout off).

    ``prefill(model, input_ids, attention_mask) -> (input_ids, attention_mask, generate_kwargs)`` may run part
    of the prompts first (the PPO engine prefills the prefix all rows share once: ``ppo.speed.prefix``).
    """
    from transformers import GenerationConfig, LogitsProcessorList

    from rlhf_plug.policy.generation_defaults import generation_defaults_off
    from rlhf_plug.policy.inverse_cdf import InverseCdfSampler

    prompt_ids, prompt_mask = left_pad(
        [prompt_token_ids(tokenizer, p) for p in prompts], tokenizer.pad_token_id, max_prompt_length
    )
    # Greedy over the scores the sampler returns: it draws each token itself (rlhf_plug.policy.inverse_cdf).
    # No min_new_tokens: it would block EOS at the first position when sampling but not when scoring.
    config = GenerationConfig(
        do_sample=False, max_new_tokens=generation.max_new_tokens,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        repetition_penalty=1.0, use_cache=True,
    )
    sampler = InverseCdfSampler(generation.temperature, generation.top_k, generation.top_p)
    input_ids, attention_mask, cache = prompt_ids.to(device), prompt_mask.to(device), {}
    if prefill is not None:
        input_ids, attention_mask, cache = prefill(policy.get_base_model(), input_ids, attention_mask)
    with generation_defaults_off(policy):  # the model's generation_config.json shapes nothing
        out = policy.generate(
            input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
            logits_processor=LogitsProcessorList([sampler]), **cache,
        )
    response = out[:, prompt_ids.shape[1] :].cpu()
    response_ids, response_mask, has_eos = truncate_after_eos(response, tokenizer.eos_token_id, tokenizer.pad_token_id)
    completions = decode_completions(tokenizer, prompts, response_ids, response_mask)
    drawn = sampler.drawn_logprobs()[:, : response_ids.shape[1]] * response_mask
    return Rollout(prompt_ids, prompt_mask, response_ids, response_mask, has_eos, list(prompts), completions,
                   sampler_logprobs=drawn)
