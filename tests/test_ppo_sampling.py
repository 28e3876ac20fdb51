"""Rollout sampling draws from softmax(warped logits) by inverse CDF, and grouped-query
attention on CPU keeps fewer activations for the same numbers."""

from __future__ import annotations

import pytest


def _frequencies(tokens, vocab: int):
    import torch

    return torch.bincount(tokens, minlength=vocab).double() / len(tokens)


def _assert_close_to(frequencies, probs, rows: int):
    import torch

    sigma = (probs * (1 - probs) / rows).sqrt()
    assert torch.all((frequencies - probs).abs() <= 5 * sigma + 1e-9), (frequencies, probs)


def test_inverse_cdf_draws_follow_the_softmax_and_never_pick_an_impossible_token():
    import torch
    from rlhf_plug_plugins.ppo.inverse_cdf import draw

    logits = torch.tensor([2.0, 0.5, float("-inf"), -1.0, 1.0, 0.0])
    rows = 40_000
    tokens = draw(logits.expand(rows, -1), torch.Generator().manual_seed(0))
    frequencies = _frequencies(tokens, 6)
    assert frequencies[2] == 0
    _assert_close_to(frequencies, logits.softmax(-1).double(), rows)


def test_the_sampler_applies_temperature_and_top_k_before_drawing():
    import torch
    from rlhf_plug_plugins.ppo.inverse_cdf import InverseCdfSampler

    logits = torch.tensor([[1.0, 3.0, 0.0, 2.0, -1.0]]).expand(20_000, -1).contiguous()
    torch.manual_seed(0)
    scores = InverseCdfSampler(temperature=0.5, top_k=2, top_p=1.0)(None, logits.clone())
    assert torch.all((scores == 0).sum(-1) == 1), "one drawn token per row, every other score -inf"
    tokens = scores.argmax(-1)
    expected = torch.zeros(5, dtype=torch.float64)
    expected[[1, 3]] = torch.tensor([3.0, 2.0]).div(0.5).softmax(-1).double()
    _assert_close_to(_frequencies(tokens, 5), expected, len(tokens))


def test_rollouts_are_the_same_for_the_same_seed_and_differ_for_another(tiny_policy):
    from types import SimpleNamespace

    import torch
    from rlhf_plug_plugins.ppo.actor_critic import build_actor_critic
    from rlhf_plug_plugins.ppo.rollout import sample
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_policy)
    model = build_actor_critic(str(tiny_policy), "none", {"r": 4, "lora_alpha": 8}, "trunk", 1.0, torch.device("cpu"))
    generation = SimpleNamespace(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=12)
    prompts = [[{"role": "user", "content": text}] for text in ("Hi", "Compute 5 times 16.", "Name a colour.")] * 3

    def rollout(seed):
        torch.manual_seed(seed)
        return sample(model.peft, tokenizer, prompts, generation, 64, torch.device("cpu")).response_ids

    first = rollout(1)
    assert torch.equal(first, rollout(1))
    assert not torch.equal(first, rollout(2))


@pytest.mark.parametrize("share_prefix", [False, True])
def test_grouped_attention_on_cpu_gives_the_same_logprobs_and_gradients_and_keeps_less(tiny_policy, share_prefix):
    import os

    import torch
    from rlhf_plug_plugins.ppo.actor_critic import build_actor_critic
    from rlhf_plug_plugins.ppo.cpu_attention import SWITCH, grouped_attention_on_cpu
    from rlhf_plug_plugins.ppo.rollout import left_pad, prompt_token_ids, right_pad
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_policy)
    torch.manual_seed(0)
    model = build_actor_critic(str(tiny_policy), "none", {"r": 4, "lora_alpha": 8}, "trunk", 0.7, torch.device("cpu"))
    model.share_prefix = share_prefix
    with torch.no_grad():
        for name, param in model.peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    system = {"role": "system", "content": "You are a careful helpful assistant. " * 3}
    prompts = [[system, {"role": "user", "content": t}] for t in ("Compute 5 times 16.", "Hi", "What is red?")]
    prompt_ids, prompt_mask = left_pad([prompt_token_ids(tokenizer, p) for p in prompts], tokenizer.pad_token_id, 256)
    response_ids, response_mask = right_pad([[5, 6, 7, 8], [9, 10], [11, 12, 13]], tokenizer.pad_token_id)
    ids, mask = torch.cat([prompt_ids, response_ids], 1), torch.cat([prompt_mask, response_mask], 1)

    def train_pass():
        saved = {}

        def pack(tensor):
            saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor

        model.zero_grad(set_to_none=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = model(role="train", input_ids=ids, attention_mask=mask, prompt_length=prompt_ids.shape[1])
        (out.logprobs * response_mask).sum().backward()
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        kept = sum(n for ptr, n in saved.items() if ptr not in params)
        return out.logprobs.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None], kept

    assert SWITCH not in os.environ
    plain = train_pass()
    with grouped_attention_on_cpu(torch.device("cpu")):
        grouped = train_pass()
    assert SWITCH not in os.environ, "the switch is restored"
    assert torch.equal(plain[0], grouped[0])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain[1], grouped[1]))
    assert grouped[2] < plain[2], "the repeated keys and values are no longer kept"
