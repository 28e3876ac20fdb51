"""Gradient checkpointing of the trunk, chosen per batch from a memory budget.

Checkpointing recomputes each decoder layer in the backward pass instead of
keeping its activations: on CPU that is one more forward pass per update
(about 1.3 s of 11 s for SmolLM2-135M, 8 × 78 tokens), to save memory that a
short batch does not need. ``"auto"`` checkpoints only when the activations a
batch would keep exceed ``activation_budget_gib``, and then only every n-th
layer when that is enough (transformers' ``every_n_layers``).
"""

from __future__ import annotations

import inspect
import math
from contextlib import contextmanager
from functools import partial

import torch

# What a Llama-style decoder layer keeps per token for the backward pass, as (hidden, intermediate)
# vectors: measured on SmolLM2-135M with LoRA on all linear layers (30 layers, hidden 576, intermediate
# 1536) in fp32. Eager: 36.1 KiB per token and layer, 8·hidden + 3·intermediate (39.3 KiB at 8 x 78 tokens
# without a shared prefix, stop 12); with lean activations (rlhf_plug_plugins.ppo.speed.lean_activations) 22.9 KiB,
# about 5·hidden + 2·intermediate.
EAGER_VECTORS, LEAN_VECTORS = (8, 3), (5, 2)


def activation_bytes(config, tokens: int, element_bytes: int, lean: bool = False) -> int:
    """Estimated trunk activations kept for the backward pass of ``tokens`` tokens, without checkpointing."""
    text = _text_config(config)
    hidden, layers = text.hidden_size, text.num_hidden_layers
    intermediate = getattr(text, "intermediate_size", None) or 4 * hidden
    hidden_vectors, intermediate_vectors = LEAN_VECTORS if lean else EAGER_VECTORS
    return tokens * layers * (hidden_vectors * hidden + intermediate_vectors * intermediate) * element_bytes


def checkpoint_every(needed: float, budget: float, layers: int) -> int | None:
    """``None`` (keep everything) when ``needed`` fits ``budget``; else checkpoint every n-th layer
    (layers 0, n, 2n, ...), the largest n whose remaining activations fit (n = 1: every layer)."""
    if needed <= budget:
        return None
    for n in range(layers, 1, -1):
        if needed * (1 - math.ceil(layers / n) / layers) <= budget:
            return n
    return 1


class Checkpointing:
    """Sets the trunk's checkpointing before each forward pass with gradients.

    ``mode`` is True (every layer, always), False (never) or ``"auto"`` (by the budget).
    """

    def __init__(self, causal_lm, mode: bool | str, budget_gib: float = 0.5):
        self.model = causal_lm
        self.mode = mode
        self.budget = budget_gib * 2**30
        self.every: int | None = None  # the last choice, for the metrics
        self.lean = False  # training forwards keep lean activations (ActorCritic.keep_lean_activations)

    @property
    def may_checkpoint(self) -> bool:
        return self.mode is not False

    def choose(self, tokens: int) -> int | None:
        if self.mode != "auto":
            return 1 if self.mode else None
        param = next(self.model.parameters())
        element_bytes = param.element_size() if param.is_floating_point() else 2  # quantized bases compute in 16-bit
        layers = _text_config(self.model.config).num_hidden_layers
        # Lean activations keep less only in fp32: 16-bit LoRA inputs are cast copies, which are kept as such.
        lean = self.lean and element_bytes == 4 and not torch.is_autocast_enabled(param.device.type)
        needed = activation_bytes(self.model.config, tokens, element_bytes, lean)
        return checkpoint_every(needed, self.budget, layers)

    def before_forward(self, tokens: int) -> None:
        """``tokens``: what the trunk computes (a prompt prefix the rows share counts once)."""
        self.every = self.choose(tokens)
        if self.every is not None:
            enable_checkpointing(self.model, self.every)
        elif is_checkpointing(self.model):
            disable_checkpointing(self.model)


def _text_config(config):
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def is_checkpointing(model) -> bool:
    """Any layer checkpointed (read from the flags: transformers 5 renamed the property and warns on the old one)."""
    return any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


def enable_checkpointing(model, every: int) -> None:
    # Non-reentrant: the frozen base's inputs need no grad for LoRA's gradients to flow.
    kwargs = {"use_reentrant": False}
    enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x; the old name warns
    if enable is None:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    elif "every_n_layers" in inspect.signature(enable).parameters:
        enable(activation_checkpointing_kwargs=kwargs, every_n_layers=every)
    else:
        enable(activation_checkpointing_kwargs=kwargs)


def disable_checkpointing(model) -> None:
    disable = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
    disable()


def checkpointed_layers(trunk) -> list:
    """The layers that will checkpoint in this pass (none without gradients)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    if not torch.is_grad_enabled():
        return []
    return [m for m in trunk.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]


@contextmanager
def recomputed_within(layers: list, context):
    """Inside, checkpointed ``layers`` run, and later recompute, within ``context()``.

    A checkpointed layer runs its forward again in the backward pass, after every context around the
    original forward has exited: a pass under another adapter (the value adapter) would be recomputed
    with the policy's. The checkpoint records the function it is given, so wrapping it here is enough.
    """
    originals = [(layer, layer._gradient_checkpointing_func) for layer in layers]
    for layer, checkpoint in originals:
        layer._gradient_checkpointing_func = partial(_checkpoint_within, checkpoint, context)
    try:
        yield
    finally:
        for layer, checkpoint in originals:
            layer._gradient_checkpointing_func = checkpoint


def _checkpoint_within(checkpoint, context, function, *args, **kwargs):
    def within(*inner_args, **inner_kwargs):
        with context():
            return function(*inner_args, **inner_kwargs)

    return checkpoint(within, *args, **kwargs)
