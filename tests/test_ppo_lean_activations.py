"""Lean training forwards keep fewer activations and change no gradient, with or without checkpointing."""

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


def _train_pass(model, monkeypatch, autocast: bool = False):
    """Gradients of one training pass, and the storages it kept for the backward pass, counted by width."""
    import collections

    import torch
    from rlhf_plug_plugins.ppo.speed import lean_activations

    torch.manual_seed(1)
    ids = torch.randint(3, 200, (3, 14))
    kept = {}

    def keep(packed):
        if isinstance(packed, torch.Tensor):
            kept[packed.untyped_storage().data_ptr()] = packed.untyped_storage().nbytes() // (ids.numel() * 4)
        return packed

    lean_pack = lean_activations._pack
    monkeypatch.setattr(lean_activations, "_pack", lambda t: keep(lean_pack(t)))
    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        out = model(role="train", input_ids=ids, attention_mask=torch.ones_like(ids), prompt_length=6)
    (out.logprobs.sum() + out.values.sum()).backward()
    monkeypatch.setattr(lean_activations, "_pack", lean_pack)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return grads, collections.Counter(kept.values())


@pytest.mark.parametrize("checkpointing", [False, True], ids=["kept", "checkpointed"])
def test_lean_activations_keep_two_mlp_intermediates_and_no_norm_output_with_the_same_gradients(
    actor_critic, checkpointing, monkeypatch
):
    import torch
    from rlhf_plug_plugins.ppo.speed.activation_checkpointing import Checkpointing

    lm = actor_critic.causal_lm
    actor_critic.checkpointing = Checkpointing(lm, checkpointing)
    actor_critic.train(checkpointing)
    layers, hidden, intermediate = lm.config.num_hidden_layers, lm.config.hidden_size, lm.config.intermediate_size
    eager_grads, eager_kept = _train_pass(actor_critic, monkeypatch)
    assert actor_critic.keep_lean_activations() == {"mlps": layers, "norms": 2 * layers + 1}
    forwards = [m.forward for m in lm.modules() if "forward" in m.__dict__]
    actor_critic.keep_lean_activations()  # a second call wraps nothing twice
    assert [m.forward for m in lm.modules() if "forward" in m.__dict__] == forwards
    lean_grads, lean_kept = _train_pass(actor_critic, monkeypatch)

    assert eager_grads.keys() == lean_grads.keys() and len(lean_grads) > 2 * layers
    for name, grad in eager_grads.items():
        assert torch.equal(grad, lean_grads[name]), name
    if checkpointing:  # the checkpoint keeps each layer's input only, lean or not
        assert lean_kept[intermediate] == eager_kept[intermediate] == 0
    else:
        assert eager_kept[intermediate] >= 3 * layers
        assert lean_kept[intermediate] == 2 * layers  # gate(x) and up(x): silu and the product are recomputed
        # No norm output, but the first: it normalises the frozen embeddings, so its input is kept by no one else
        assert lean_kept[hidden] <= eager_kept[hidden] - (2 * layers - 1)


def test_lean_activations_change_no_gradient_under_bf16_autocast(actor_critic, monkeypatch):
    """Autocast linears keep bf16 copies of their inputs, so few recipes apply; whatever is recomputed runs
    under the forward's autocast, and the gradients are the eager ones."""
    import torch

    eager_grads, _ = _train_pass(actor_critic, monkeypatch, autocast=True)
    actor_critic.keep_lean_activations()
    lean_grads, _ = _train_pass(actor_critic, monkeypatch, autocast=True)
    assert eager_grads.keys() == lean_grads.keys()
    for name, grad in eager_grads.items():
        assert torch.equal(grad, lean_grads[name]), name


def test_an_mlp_that_does_more_than_swiglu_keeps_its_own_forward():
    import torch
    from rlhf_plug_plugins.ppo.speed.lean_activations import is_swiglu_mlp, use_lean_activations
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    class ScaledMLP(LlamaMLP):  # like Falcon-H1's: multipliers around the product
        def forward(self, x):
            return self.down_proj(self.act_fn(self.gate_proj(x) * 2.0) * self.up_proj(x))

    config = LlamaConfig(hidden_size=8, intermediate_size=16, num_attention_heads=2, num_key_value_heads=2)
    plain, scaled = LlamaMLP(config), ScaledMLP(config)
    assert is_swiglu_mlp(plain) and not is_swiglu_mlp(scaled)
    x = torch.randn(2, 3, 8)
    before = scaled(x)
    assert use_lean_activations(torch.nn.ModuleList([plain, scaled]))["mlps"] == 1
    assert torch.equal(scaled(x), before) and "forward" not in scaled.__dict__


def test_an_output_changed_in_place_is_kept_as_it_is_not_recomputed():
    import torch
    from rlhf_plug_plugins.ppo.speed.lean_activations import recompute_cheap_activations, use_lean_activations
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    torch.manual_seed(0)
    norm, linear = LlamaRMSNorm(8), torch.nn.Linear(8, 4)
    x = torch.randn(3, 8, requires_grad=True)

    def weight_gradient(lean: bool):
        linear.zero_grad()
        with recompute_cheap_activations() if lean else torch.enable_grad():
            hidden = norm(x)
            hidden.mul_(3.0)  # after the norm, before the layer that keeps it
            out = linear(hidden)
        out.square().sum().backward()
        return linear.weight.grad.clone()

    eager = weight_gradient(False)
    use_lean_activations(norm)
    assert torch.equal(weight_gradient(True), eager)


def test_lean_activations_leave_passes_without_gradients_alone(actor_critic, monkeypatch):
    import torch
    from rlhf_plug_plugins.ppo.speed import lean_activations

    actor_critic.keep_lean_activations()
    registered = []
    register = lean_activations._register
    monkeypatch.setattr(lean_activations, "_register", lambda *a: registered.append(a[0].shape) or register(*a))
    ids = torch.randint(3, 200, (2, 9))
    with torch.no_grad():
        actor_critic(role="train", input_ids=ids, attention_mask=torch.ones_like(ids), prompt_length=4)
        actor_critic(role="reference", input_ids=ids, attention_mask=torch.ones_like(ids), prompt_length=4)
    assert not registered
    actor_critic(role="train", input_ids=ids, attention_mask=torch.ones_like(ids), prompt_length=4)
    assert len(registered) >= 3 * actor_critic.causal_lm.config.num_hidden_layers


def test_auto_checkpointing_budgets_for_what_lean_forwards_keep(actor_critic):
    import torch
    from rlhf_plug_plugins.ppo.speed.activation_checkpointing import Checkpointing

    actor_critic.checkpointing = Checkpointing(actor_critic.causal_lm, "auto", budget_gib=1e-4)  # ~105 KiB
    tokens = 20  # the tiny model keeps ~140 KiB for them eagerly, ~90 KiB with lean activations
    assert actor_critic.checkpointing.choose(tokens) is not None
    actor_critic.keep_lean_activations()
    assert actor_critic.checkpointing.choose(tokens) is None
    with torch.autocast("cpu", torch.bfloat16):  # autocast linears keep bf16 copies: no saving to count on
        assert actor_critic.checkpointing.choose(tokens) is not None
