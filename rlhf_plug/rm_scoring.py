"""Score (prompt, completion) pairs with a sequence-classification reward model.

Text is formatted exactly as the reward stage formats training pairs
(:func:`rlhf_plug.encoding.encode_prompt_answer`: TRL 1.16's format, with the
prompt cut from the left beyond ``max_length``): conversational data goes through
the chat template, plain text gets EOS appended. Scoring any other way reads the
score at a position the model was never trained on. ``tests/test_stages.py``
checks this agrees with TRL's own tokenization, and ``tests/test_hh_data.py``
that training and scoring agree on a long transcript.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def reward_input_ids(tokenizer, prompt: Any, completion: Any, max_length: int | None = None) -> list[int]:
    """Token ids of ``prompt + completion`` as the reward stage builds them."""
    from rlhf_plug.encoding import encode_prompt_answer

    return encode_prompt_answer(tokenizer, prompt, completion, max_length).input_ids


def score(
    model, tokenizer, prompts: Sequence[Any], completions: Sequence[Any], batch_size: int = 16, max_length: int | None = None
) -> list[float]:
    """Reward-model scores, one per (prompt, completion); the model's train/eval mode is restored."""
    import torch

    from rlhf_plug.policy.sampling import right_pad

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    scores: list[float] = []
    try:
        with torch.no_grad():
            for start in range(0, len(completions), batch_size):
                ids = [
                    reward_input_ids(tokenizer, p, c, max_length)
                    for p, c in zip(prompts[start : start + batch_size], completions[start : start + batch_size])
                ]
                input_ids, mask = right_pad(ids, pad)
                logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
                scores.extend(logits[:, 0].float().cpu().tolist())
    finally:
        model.train(was_training)
    return scores
