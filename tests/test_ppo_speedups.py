"""The PPO engine's shortcuts compute what the plain passes compute: a shared prompt prefix
run once, sampling with the LoRA merged into temporary weights, checkpointing chosen by a budget,
grouped-query attention on CPU."""

from __future__ import annotations

import pytest


@pytest.fixture
def actor_critic(tiny_policy):
    import torch
    from rlhf_plug_plugins.ppo.actor_critic import build_actor_critic

    torch.manual_seed(0)
    model = build_actor_critic(str(tiny_policy), "none", {"r": 4, "lora_alpha": 8}, "trunk", 0.7, torch.device("cpu"), "auto")
    with torch.no_grad():
        for name, param in model.peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)  # a policy that differs from the reference
            if "value_head" in name:
                param.normal_(0, 0.05)
        model.value_head.weight.normal_(0, 0.05)
    return model


def _batch(tokenizer, prefix_words: int = 12):
    """Left-padded prompts that open with the same system message, then right-padded responses."""
    import torch
    from rlhf_plug.policy.sampling import left_pad, prompt_token_ids, right_pad

    system = {"role": "system", "content": " ".join(["You are a careful helpful assistant."] * (prefix_words // 6 + 1))}
    prompts = [[system, {"role": "user", "content": text}] for text in ("Compute 5 times 16.", "Hi", "What is in my car right now, please?")]
    prompt_ids, prompt_mask = left_pad([prompt_token_ids(tokenizer, p) for p in prompts], tokenizer.pad_token_id, 256)
    response_ids, response_mask = right_pad([[5, 6, 7, 8], [9, 10], [11, 12, 13]], tokenizer.pad_token_id)
    return prompts, torch.cat([prompt_ids, response_ids], 1), torch.cat([prompt_mask, response_mask], 1), prompt_ids.shape[1]


@pytest.mark.parametrize("checkpointing", [False, True], ids=["kept", "checkpointed"])
def test_a_shared_prefix_run_once_gives_the_same_logprobs_values_and_gradients(actor_critic, tiny_policy, checkpointing, monkeypatch):
    import torch
    from rlhf_plug_plugins.ppo import actor_critic as module
    from rlhf_plug_plugins.ppo.speed.activation_checkpointing import Checkpointing, is_checkpointing
    from rlhf_plug_plugins.ppo.speed.prefix import shared_prefix
    from transformers import AutoTokenizer

    actor_critic.checkpointing = Checkpointing(actor_critic.causal_lm, checkpointing)
    shared_passes = []
    run_prefix_once = module.hidden_with_shared_prefix
    monkeypatch.setattr(module, "hidden_with_shared_prefix", lambda *a: shared_passes.append(run_prefix_once(*a)) or shared_passes[-1])
    tokenizer = AutoTokenizer.from_pretrained(tiny_policy)
    _, ids, mask, prompt_length = _batch(tokenizer)
    assert shared_prefix(ids, mask)[1] >= 8, "the rows should share their system message"
    response_mask = mask[:, prompt_length:].float()

    def passes(share: bool):
        actor_critic.share_prefix = share
        actor_critic.zero_grad(set_to_none=True)
        out = actor_critic(role="train", input_ids=ids, attention_mask=mask, prompt_length=prompt_length)
        ((out.logprobs + out.values) * response_mask).sum().backward()
        grads = [p.grad.clone() for p in actor_critic.parameters() if p.grad is not None]
        with torch.no_grad():
            reference = actor_critic(role="reference", input_ids=ids, attention_mask=mask, prompt_length=prompt_length)
        return out.logprobs.detach() * response_mask, out.values.detach() * response_mask, reference * response_mask, grads

    plain, shared = passes(False), passes(True)
    assert is_checkpointing(actor_critic.causal_lm) == checkpointing
    assert shared_passes and all(hidden is not None for hidden in shared_passes), "the prefix ran once, checkpointed or not"
    for a, b in zip(plain[:3], shared[:3]):
        assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
    assert len(plain[3]) == len(shared[3]) > 0
    for a, b in zip(plain[3], shared[3]):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3)


def test_sampling_merged_packed_or_with_a_shared_prefix_draws_the_same_tokens_and_leaves_the_weights(actor_critic, tiny_policy):
    import itertools
    from types import SimpleNamespace

    import torch
    from rlhf_plug_plugins.ppo.speed.merged_generation import sampling_weights
    from rlhf_plug_plugins.ppo.speed.prefix import generation_inputs
    from rlhf_plug.policy.sampling import sample
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_policy)
    prompts = _batch(tokenizer)[0]
    before = {n: p.clone() for n, p in actor_critic.peft.named_parameters()}
    generation = SimpleNamespace(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=6)
    drawn = []
    for merge, share, pack in itertools.product((False, True), (False, True), (None, len(prompts))):
        torch.manual_seed(1)
        with sampling_weights(actor_critic, True, merge, pack):
            prefill = generation_inputs if share else None
            drawn.append(sample(actor_critic.peft, tokenizer, prompts, generation, 256, torch.device("cpu"), prefill).response_ids)
    assert len(drawn) == 8 and all(torch.equal(drawn[0], d) for d in drawn[1:])
    assert all(torch.equal(before[n], p) for n, p in actor_critic.peft.named_parameters())
    assert actor_critic.peft.active_adapter == "default" and not actor_critic.policy_is_identity()


@pytest.mark.parametrize("policy", [True, False], ids=["merged-policy", "reference"])
def test_packed_sampling_computes_with_the_merged_or_own_weights_and_restores_the_layers(actor_critic, tiny_policy, policy, monkeypatch):
    import torch
    from rlhf_plug_plugins.ppo.speed import packed_linear
    from rlhf_plug_plugins.ppo.speed.merged_generation import sampling_weights
    from transformers import AutoTokenizer

    if not packed_linear.can_pack(torch.device("cpu"), torch.float32):
        pytest.skip("this torch has no oneDNN")
    _, ids, mask, _ = _batch(AutoTokenizer.from_pretrained(tiny_policy))
    calls = []
    pack = packed_linear._packed_forward
    monkeypatch.setattr(packed_linear, "_packed_forward", lambda *a: calls.append(1) or pack(*a))
    lm = actor_critic.causal_lm

    def logits(pack_rows):
        calls.clear()
        with torch.no_grad(), sampling_weights(actor_critic, policy, True, pack_rows):
            return lm(input_ids=ids, attention_mask=mask).logits, len(calls)

    plain, plain_calls = logits(None)
    packed, packed_calls = logits(len(ids))
    layers = lm.config.num_hidden_layers
    assert plain_calls == 0 and packed_calls == 7 * layers + 1, "q k v o gate up down in every layer, and the LM head"
    assert torch.allclose(plain, packed, atol=1e-4, rtol=1e-4), (plain - packed).abs().max()
    with torch.no_grad(), sampling_weights(actor_critic, not policy, True, None):
        other = lm(input_ids=ids, attention_mask=mask).logits
    assert not torch.allclose(other, packed, atol=1e-3), "the policy and the reference differ, and packing kept which is which"
    assert not any("forward" in m.__dict__ for m in lm.modules()), "every layer has its own forward back"


def test_auto_checkpointing_keeps_short_batches_and_checkpoints_long_ones(actor_critic):
    from rlhf_plug_plugins.ppo.speed.activation_checkpointing import Checkpointing, checkpoint_every, is_checkpointing

    assert checkpoint_every(0.6, 1.0, 30) is None
    assert checkpoint_every(1.5, 1.0, 30) == 3  # every third layer: 1.5 · 2/3 = 1.0 fits
    assert checkpoint_every(4.0, 1.0, 30) == 1
    lm = actor_critic.causal_lm
    budget = Checkpointing(lm, "auto", budget_gib=1e-4)  # ~100 KiB: the tiny model's short batch fits, a long one does not
    budget.before_forward(8)
    assert budget.every is None and not is_checkpointing(lm)
    budget.before_forward(4096)
    assert budget.every == 1 and is_checkpointing(lm)
    budget.before_forward(8)
    assert not is_checkpointing(lm)
    assert Checkpointing(lm, True).choose(1) == 1 and Checkpointing(lm, False).choose(10**9) is None


@pytest.mark.parametrize("share_prefix", [False, True])
def test_grouped_attention_on_cpu_gives_the_same_logprobs_and_gradients_and_keeps_less(actor_critic, tiny_policy, share_prefix):
    import os

    import torch
    from rlhf_plug_plugins.ppo.speed.cpu_attention import SWITCH, grouped_attention_on_cpu
    from transformers import AutoTokenizer

    _, ids, mask, prompt_length = _batch(AutoTokenizer.from_pretrained(tiny_policy))
    response_mask = mask[:, prompt_length:].float()
    actor_critic.share_prefix = share_prefix

    def train_pass():
        saved = {}

        def pack(tensor):
            saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor

        actor_critic.zero_grad(set_to_none=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = actor_critic(role="train", input_ids=ids, attention_mask=mask, prompt_length=prompt_length)
        (out.logprobs * response_mask).sum().backward()
        params = {p.untyped_storage().data_ptr() for p in actor_critic.parameters()}
        kept = sum(n for ptr, n in saved.items() if ptr not in params)
        return out.logprobs.detach(), [p.grad.clone() for p in actor_critic.parameters() if p.grad is not None], kept

    assert SWITCH not in os.environ
    plain = train_pass()
    with grouped_attention_on_cpu(torch.device("cpu")):
        grouped = train_pass()
    assert SWITCH not in os.environ, "the switch is restored"
    assert torch.equal(plain[0], grouped[0])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain[1], grouped[1]))
    assert grouped[2] < plain[2], "the repeated keys and values are no longer kept"


def _rss_mib() -> float:
    from pathlib import Path

    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="reads /proc and needs glibc")
def test_released_heap_pages_leave_the_resident_set():
    """Freed blocks that glibc keeps in the heap (a live block above them stops it trimming the top) stay
    resident until released; release_freed_memory hands them back."""
    import ctypes

    from rlhf_plug_plugins.ppo.speed.heap import release_freed_memory

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    block = 64 * 1024  # below glibc's mmap threshold: served from the heap
    blocks = [libc.malloc(block) for _ in range(3000)]  # about 190 MiB
    for address in blocks:
        ctypes.memset(address, 1, block)  # touch every page
    guard = libc.malloc(block)  # live, above the others
    for address in blocks:
        libc.free(address)
    freed_but_resident = _rss_mib()
    assert release_freed_memory() is True
    released = _rss_mib()
    libc.free(guard)
    assert freed_but_resident - released > 150, (freed_but_resident, released)


def test_releasing_heap_pages_mid_forward_changes_no_number(actor_critic, tiny_policy, monkeypatch):
    """The release before the head's logits is called in training forwards and changes nothing they compute."""
    import torch
    from rlhf_plug_plugins.ppo import actor_critic as module
    from transformers import AutoTokenizer

    calls = []
    release = module.release_freed_memory
    monkeypatch.setattr(module, "release_freed_memory", lambda: calls.append(1) or release())
    tokenizer = AutoTokenizer.from_pretrained(tiny_policy)
    _, ids, mask, prompt_length = _batch(tokenizer)

    def logprobs_and_grads(release: bool):
        actor_critic.release_memory = release
        actor_critic.zero_grad(set_to_none=True)
        out = actor_critic(role="train", input_ids=ids, attention_mask=mask, prompt_length=prompt_length)
        (out.logprobs.sum() + out.values.sum()).backward()
        return out.logprobs.detach(), [p.grad.clone() for p in actor_critic.parameters() if p.requires_grad]

    kept, kept_grads = logprobs_and_grads(False)
    assert calls == []
    released, released_grads = logprobs_and_grads(True)
    assert calls == [1]
    with torch.no_grad():
        actor_critic(role="train", input_ids=ids, attention_mask=mask, prompt_length=prompt_length)
    assert calls == [1], "no-grad passes keep no activations and release nothing"
    assert torch.equal(kept, released)
    assert all(torch.equal(a, b) for a, b in zip(kept_grads, released_grads))


@pytest.mark.parametrize("share_prefix", [False, True])
def test_a_checkpointed_value_adapter_recomputes_under_the_value_adapter(tiny_policy, share_prefix):
    import torch
    from rlhf_plug_plugins.ppo.actor_critic import build_actor_critic
    from rlhf_plug_plugins.ppo.speed.activation_checkpointing import Checkpointing
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    model = build_actor_critic(str(tiny_policy), "none", {"r": 4, "lora_alpha": 8}, "adapter", 0.7, torch.device("cpu"), False)
    with torch.no_grad():
        for name, param in model.peft.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)  # the policy and value adapters differ
        model.value_head.weight.normal_(0, 0.05)
    model.share_prefix = share_prefix
    _, ids, mask, prompt_length = _batch(AutoTokenizer.from_pretrained(tiny_policy))

    def gradients(checkpointing: bool) -> dict:
        model.checkpointing = Checkpointing(model.causal_lm, checkpointing)
        model.train(checkpointing)
        model.zero_grad(set_to_none=True)
        out = model(role="train", input_ids=ids, attention_mask=mask, prompt_length=prompt_length)
        (out.logprobs.sum() + out.values.sum()).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    kept, checkpointed = gradients(False), gradients(True)
    assert any(".value." in n for n in kept) and kept.keys() == checkpointed.keys()
    for name, grad in kept.items():
        torch.testing.assert_close(checkpointed[name], grad, rtol=1e-5, atol=1e-6, msg=name)
