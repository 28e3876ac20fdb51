"""``ActorCritic``: the policy, reference and value roles on one shared base."""

from __future__ import annotations


def test_policy_is_identity_only_while_the_adapter_changes_nothing(tiny_policy):
    """The step-0 evaluation reuses the reference samples exactly when this holds."""
    import torch
    from rlhf_plug_plugins.ppo.actor_critic import build_actor_critic

    model = build_actor_critic(str(tiny_policy), "none", {"r": 4, "lora_alpha": 8}, "trunk", 1.0, torch.device("cpu"))
    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    mask = torch.ones_like(ids)

    def policy_and_reference():
        with torch.no_grad():
            policy = model(role="train", input_ids=ids, attention_mask=mask, prompt_length=3, with_values=False).logprobs
            return policy, model(role="reference", input_ids=ids, attention_mask=mask, prompt_length=3)

    assert model.policy_is_identity()
    policy, reference = policy_and_reference()
    assert torch.equal(policy, reference)
    lora_b = next(p for n, p in model.peft.named_parameters() if "lora_B.default" in n)
    with torch.no_grad():
        lora_b.add_(0.5)
    assert not model.policy_is_identity()
    policy, reference = policy_and_reference()
    assert not torch.allclose(policy, reference)
