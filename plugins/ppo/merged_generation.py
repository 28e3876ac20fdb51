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
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


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


@contextmanager
def merged_adapter(peft_model, adapter: str, layers: list):
    """Inside: ``peft_model`` computes with ``W + ΔW(adapter)`` and every adapter off; outside: as before."""
    swapped = []
    try:
        with torch.no_grad():
            for layer in layers:
                base = layer.get_base_layer()
                merged = base.weight + layer.get_delta_weight(adapter).to(base.weight.dtype)
                swapped.append((base, base.weight))
                base.weight = nn.Parameter(merged, requires_grad=False)
        with peft_model.disable_adapter():
            yield
    finally:
        for base, weight in swapped:
            base.weight = weight


@contextmanager
def sampling_weights(actor_critic, policy: bool, merge: bool):
    """The weights to sample with: the policy (merged when ``merge`` and its layers allow) or the reference."""
    from rlhf_plug_plugins.ppo.actor_critic import POLICY

    layers = mergeable_layers(actor_critic.peft, POLICY) if policy and merge else None
    if layers is None:
        with actor_critic.adapter(POLICY if policy else None):
            yield
        return
    with merged_adapter(actor_critic.peft, POLICY, layers):
        yield
