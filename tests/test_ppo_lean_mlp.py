"""The lean SwiGLU forward keeps fewer MLP intermediates and changes no gradient, with or without checkpointing."""

from __future__ import annotations

import pytest


@pytest.fixture
def actor_critic(tiny_policy):
    import torch
    from rlhf_plug_plugins.ppo.actor_critic import build_actor_critic

    torch.manual_seed(0)
    model = build_actor_critic(str(tiny_policy), "none", {"r": 4, "lora_alpha": 8}, "trunk", 0.7, torch.device("cpu"), False)
    with torch.no_grad():
        for name, param in model.peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)  # a policy that differs from the reference
        model.value_head.weight.normal_(0, 0.05)
    return model


def _train_pass(model, intermediate: int):
    """Gradients of one training pass, and how many [tokens, intermediate] tensors it saved for backward."""
    import torch

    torch.manual_seed(1)
    ids = torch.randint(3, 200, (3, 14))
    mask = torch.ones_like(ids)
    saved = []

    def pack(tensor):
        if tensor.numel() == ids.numel() * intermediate:  # one value per token and MLP unit (weights are smaller)
            saved.append(tensor.untyped_storage().data_ptr())
        return tensor

    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(role="train", input_ids=ids, attention_mask=mask, prompt_length=6)
    (out.logprobs.sum() + out.values.sum()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return grads, len(set(saved))


@pytest.mark.parametrize("checkpointing", [False, True], ids=["kept", "checkpointed"])
def test_lean_swiglu_keeps_two_intermediates_per_layer_with_the_same_gradients(actor_critic, checkpointing, monkeypatch):
    import torch
    from rlhf_plug_plugins.ppo import lean_mlp
    from rlhf_plug_plugins.ppo.checkpointing import Checkpointing
    from rlhf_plug_plugins.ppo.lean_mlp import use_lean_swiglu

    lean_calls = []
    apply = lean_mlp._SwiGLU.apply
    monkeypatch.setattr(lean_mlp._SwiGLU, "apply", lambda *a: lean_calls.append(1) or apply(*a))

    lm = actor_critic.causal_lm
    actor_critic.checkpointing = Checkpointing(lm, checkpointing)
    actor_critic.train(checkpointing)
    layers, intermediate = lm.config.num_hidden_layers, lm.config.intermediate_size
    eager_grads, eager_saved = _train_pass(actor_critic, intermediate)
    assert use_lean_swiglu(lm) == layers
    lean_grads, lean_saved = _train_pass(actor_critic, intermediate)

    assert eager_grads.keys() == lean_grads.keys() and len(lean_grads) > 2 * layers
    for name, grad in eager_grads.items():
        assert torch.equal(grad, lean_grads[name]), name
    if checkpointing:  # a checkpointed layer runs the plain MLP: its checkpoint must see what it saves
        assert not lean_calls
    else:
        assert len(lean_calls) == layers
        assert eager_saved >= 3 * layers
        assert lean_saved == 2 * layers  # gate(x) and up(x); silu(gate(x)) and the product are recomputed


def test_lean_swiglu_leaves_passes_without_gradients_alone(actor_critic, monkeypatch):
    import torch
    from rlhf_plug_plugins.ppo import lean_mlp

    lean_mlp.use_lean_swiglu(actor_critic.causal_lm)
    calls = []
    apply = lean_mlp._SwiGLU.apply
    monkeypatch.setattr(lean_mlp._SwiGLU, "apply", lambda *a: calls.append(1) or apply(*a))
    ids = torch.randint(3, 200, (2, 9))
    with torch.no_grad():
        actor_critic(role="reference", input_ids=ids, attention_mask=torch.ones_like(ids), prompt_length=4)
    assert not calls
    actor_critic(role="train", input_ids=ids, attention_mask=torch.ones_like(ids), prompt_length=4)
    assert len(calls) == actor_critic.causal_lm.config.num_hidden_layers
