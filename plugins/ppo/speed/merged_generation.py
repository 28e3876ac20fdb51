"""Sampling with the policy's LoRA merged into fresh copies of the base weights.

peft's unmerged LoRA adds two small matmuls and a few elementwise ops to every
linear layer; at one token per step that per-op overhead, not the arithmetic,
dominates decoding (SmolLM2-135M on CPU: 210 LoRA layers per step). peft's own
``merge_adapter``/``unmerge_adapter`` would add and subtract ΔW in place, which
leaves the base weights (the reference model) off by rounding after every step.
Here each merged weight ``W + ΔW`` is a new tensor swapped in for the duration
of the sampling; the original weights are put back untouched.

The merged product rounds differently from ``x·W + (x·A)·B·s``, so a sample can
differ from unmerged sampling where a token's probability sits within float
rounding of the sampling draw; while the adapter is still zero (the first step)
the weights are bit-identical.

On a CPU in fp32 the merged weights are not swapped in but packed for oneDNN
(:mod:`rlhf_plug_plugins.ppo.speed.packed_linear`), together with every other linear layer.

Merging is exact only in fp32 outside autocast. In bf16 (weights, or autocast casting the
merged fp32 weight) ``W + ΔW`` rounds to 8 bits of mantissa, which erases the small ΔW of early
training: the sampler would draw from nearly the reference while the trainer scores the LoRA
policy, whose unmerged ``x·W + (x·A)·B·s`` keeps ΔW. There merging steps aside
(:func:`merge_is_exact`).
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

import torch
from torch import nn


def merge_is_exact(weight_dtype: torch.dtype, autocast: bool) -> bool:
    """``W + ΔW`` computes what the unmerged adapter computes, to fp32 rounding: fp32 weights, no autocast."""
    return weight_dtype == torch.float32 and not autocast


def merge_plan(actor_critic, wanted: bool, autocast_dtype) -> tuple[bool, str | None]:
    """(merge the policy for sampling, the line saying why merging steps aside, if it does)."""
    from rlhf_plug_plugins.ppo.actor_critic import POLICY

    dtype = next(p for p in actor_critic.causal_lm.parameters() if p.dtype.is_floating_point).dtype
    if not wanted:
        return False, None
    if not merge_is_exact(dtype, autocast_dtype is not None):
        why = "bf16 autocast" if autocast_dtype is not None else f"{str(dtype).removeprefix('torch.')} weights"
        return False, f"merged_sampling steps aside: under {why} W + ΔW rounds away the LoRA update; sampling unmerged"
    return mergeable_layers(actor_critic.peft, POLICY) is not None, None


def mergeable_layers(peft_model, adapter: str) -> list | None:
    """The LoRA layers carrying ``adapter``, or None when one of them cannot be merged exactly this way
    (quantized or non-Linear base layers, DoRA, LoRA bias)."""
    from peft.tuners.lora import LoraLayer

    layers = [m for m in peft_model.modules() if isinstance(m, LoraLayer) and adapter in m.lora_A]
    for layer in layers:
        base = layer.get_base_layer()
        if type(base) is not nn.Linear or not base.weight.dtype.is_floating_point:
            return None
        if layer.use_dora.get(adapter) or getattr(layer, "lora_bias", {}).get(adapter):
            return None
    if any(adapter in getattr(m, "lora_embedding_A", {}) for m in peft_model.modules()):
        return None
    return layers or None


def merged_weight(layer, adapter: str) -> torch.Tensor:
    """A new tensor ``W + ΔW(adapter)`` for one LoRA layer (call under ``torch.no_grad``)."""
    base = layer.get_base_layer()
    return base.weight + layer.get_delta_weight(adapter).to(base.weight.dtype)


@contextmanager
def merged_adapter(peft_model, adapter: str, layers: list):
    """Inside: ``peft_model`` computes with ``W + ΔW(adapter)`` and every adapter off; outside: as before."""
    swapped = []
    try:
        with torch.no_grad():
            for layer in layers:
                base = layer.get_base_layer()
                merged = merged_weight(layer, adapter)
                swapped.append((base, base.weight))
                base.weight = nn.Parameter(merged, requires_grad=False)
        with peft_model.disable_adapter():
            yield
    finally:
        for base, weight in swapped:
            base.weight = weight


def _merged_or_own(model, merged_layers: list):
    """(module, weight to compute with) for every plain fp32 linear of ``model`` but LoRA's own small
    ones: ``W + ΔW`` for the base layers of ``merged_layers``, each computed only when it is wanted,
    else the module's own weight."""
    from rlhf_plug_plugins.ppo.actor_critic import POLICY
    from rlhf_plug_plugins.ppo.speed.packed_linear import plain_linears

    lora_of = {id(layer.get_base_layer()): layer for layer in merged_layers}
    for name, module in plain_linears(model):
        if ".lora_" in name:
            continue
        layer = lora_of.get(id(module))
        if layer is None:
            yield module, module.weight
        else:
            yield module, merged_weight(layer, POLICY)


@contextmanager
def sampling_weights(actor_critic, policy: bool, merge: bool, pack_rows: int | None = None):
    """The weights to sample with: the policy (merged when ``merge`` and its layers allow) or the reference.

    With ``pack_rows`` (the batch size) on a CPU in fp32, every plain linear layer computes with
    its weight packed for oneDNN (:mod:`rlhf_plug_plugins.ppo.speed.packed_linear`); a merged policy is
    then packed straight from ``W + ΔW`` with no weight swapped in.
    """
    from rlhf_plug_plugins.ppo.actor_critic import POLICY
    from rlhf_plug_plugins.ppo.speed.packed_linear import can_pack, packed_linears

    param = next(actor_critic.causal_lm.parameters())
    pack = pack_rows is not None and can_pack(param.device, param.dtype)
    merge = merge and merge_is_exact(param.dtype, torch.is_autocast_enabled(param.device.type))  # any caller
    layers = mergeable_layers(actor_critic.peft, POLICY) if policy and merge else None
    with ExitStack() as stack:
        if layers is None:
            stack.enter_context(actor_critic.adapter(POLICY if policy else None))
        elif pack:
            stack.enter_context(actor_critic.peft.disable_adapter())
        else:
            stack.enter_context(merged_adapter(actor_critic.peft, POLICY, layers))
        if pack:
            stack.enter_context(packed_linears(_merged_or_own(actor_critic.causal_lm, layers or []), pack_rows))
        yield
