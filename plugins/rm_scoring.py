"""Score (prompt, completion) pairs with a sequence-classification reward model.

Text is formatted exactly as ``trl.RewardTrainer`` (1.16) formats training
pairs: conversational data goes through the chat template, plain text gets
EOS appended. Scoring any other way reads the score at a position the model
was never trained on. We keep this small function instead of calling TRL's
private ``_tokenize``; ``tests/test_reward_stage.py`` checks the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def reward_input_ids(tokenizer, prompt: Any, completion: Any) -> list[int]:
    """Token ids of ``prompt + completion`` as the reward trainer builds them."""
    if isinstance(completion, list):
        messages = (prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]) if prompt else []
        return list(tokenizer.apply_chat_template(messages + completion, tokenize=True, return_dict=True)["input_ids"])
    text = (prompt or "") + completion
    if not text.endswith(tokenizer.eos_token):
        text += tokenizer.eos_token
    return list(tokenizer(text=text)["input_ids"])


def score(model, tokenizer, prompts: Sequence[Any], completions: Sequence[Any], batch_size: int = 16) -> list[float]:
    """Reward-model scores, one per (prompt, completion); the model's train/eval mode is restored."""
    import torch

    from rlhf_plug_plugins.ppo.rollout import right_pad

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    scores: list[float] = []
    try:
        with torch.no_grad():
            for start in range(0, len(completions), batch_size):
                ids = [
                    reward_input_ids(tokenizer, p, c)
                    for p, c in zip(prompts[start : start + batch_size], completions[start : start + batch_size])
                ]
                input_ids, mask = right_pad(ids, pad)
                logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
                scores.extend(logits[:, 0].float().cpu().tolist())
    finally:
        model.train(was_training)
    return scores
