"""Rollout sampling draws from softmax(warped logits) by inverse CDF."""

from __future__ import annotations


def _frequencies(tokens, vocab: int):
    import torch

    return torch.bincount(tokens, minlength=vocab).double() / len(tokens)


def _assert_close_to(frequencies, probs, rows: int):
    import torch

    sigma = (probs * (1 - probs) / rows).sqrt()
    assert torch.all((frequencies - probs).abs() <= 5 * sigma + 1e-9), (frequencies, probs)


def test_inverse_cdf_draws_follow_the_softmax_and_never_pick_an_impossible_token():
    import torch
    from rlhf_plug.policy.inverse_cdf import draw

    logits = torch.tensor([2.0, 0.5, float("-inf"), -1.0, 1.0, 0.0])
    rows = 40_000
    tokens = draw(logits.expand(rows, -1), torch.Generator().manual_seed(0))
    frequencies = _frequencies(tokens, 6)
    assert frequencies[2] == 0
    _assert_close_to(frequencies, logits.softmax(-1).double(), rows)


def test_the_sampler_applies_temperature_and_top_k_before_drawing():
    import torch
    from rlhf_plug.policy.inverse_cdf import InverseCdfSampler

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
    from rlhf_plug.policy.sampling import sample
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
