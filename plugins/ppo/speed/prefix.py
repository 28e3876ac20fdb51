"""One forward pass for the prompt prefix that every row of a batch shares.

Chat templates open every prompt with the same tokens (SmolLM2's default system
prompt and user header: 24 of about 78 tokens per row in the built-in PPO batch).
The trunk runs that prefix once, at batch size 1, and the rows' other tokens
attend to its keys and values through a KV cache: the same attention, positions
and causal order as the padded batch, for about a third fewer tokens. Hidden
states come back in the batch's own layout, so callers see no difference
beyond float rounding.

Checkpointed layers keep the prefix too. transformers drops a cache inside a
checkpointed layer, because a layer that appends to its cache would append a second
time when the backward pass recomputes it. Here the prefix's cache is frozen: every
call reads it and returns ``prefix + new`` without storing anything, so a recompute
sees exactly what the first run saw, and the layers are told so
(``_can_checkpoint_with_cache``).
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from rlhf_plug_plugins.ppo.speed.activation_checkpointing import checkpointed_layers

MIN_PREFIX = 8  # below this the second call costs more than it saves


def shared_prefix(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``(first, length)``: each row's first real token and the number of tokens all rows share from there.

    Every row keeps at least one token of its own after the prefix.
    """
    mask = attention_mask.bool()
    first = mask.long().argmax(-1)
    real = mask.long().sum(-1)
    limit = int(real.min()) - 1
    if input_ids.shape[0] < 2 or limit < MIN_PREFIX:
        return first, 0
    index = first.unsqueeze(1) + torch.arange(limit, device=input_ids.device)
    aligned = input_ids.gather(1, index)
    same = (aligned == aligned[:1]).all(0) & mask.gather(1, index).all(0)
    length = int(same.long().cumprod(0).sum())
    return first, length if length >= MIN_PREFIX else 0


def hidden_with_shared_prefix(trunk, input_ids, attention_mask, position_ids, first: torch.Tensor, length: int):
    """``trunk(...).last_hidden_state`` for the batch, with the shared prefix computed once; None when layers are
    checkpointed and the model's cache cannot be frozen (sliding-window or quantized layers): run the batch whole."""
    batch, width = input_ids.shape
    offsets = torch.arange(width, device=input_ids.device)
    in_prefix = (offsets >= first.unsqueeze(1)) & (offsets < first.unsqueeze(1) + length)
    rest = ~in_prefix
    prefix_ids = input_ids[:1].masked_select(in_prefix[:1]).view(1, length)
    cache_kw = cache_keyword(trunk.forward)
    layers = checkpointed_layers(trunk)
    # The cache is handed in: a checkpointing model turns `use_cache` off and would not make one.
    cache = DynamicCache(config=trunk.config)
    with checkpointing_paused(layers):  # batch 1, a few tokens; a checkpointed layer would not fill the cache
        head = trunk(
            input_ids=prefix_ids, position_ids=torch.arange(length, device=input_ids.device).unsqueeze(0),
            use_cache=True, **{cache_kw: cache},
        )
    cache.batch_repeat_interleave(batch)
    if not freeze(cache) and layers:
        return None
    rest_mask = attention_mask[rest].view(batch, width - length)
    full_mask = torch.cat([rest_mask.new_ones(batch, length), rest_mask], dim=1)
    with layers_keep_cache(layers):
        tail = trunk(
            input_ids=input_ids[rest].view(batch, width - length), attention_mask=full_mask,
            position_ids=position_ids[rest].view(batch, width - length), use_cache=True, **{cache_kw: cache},
        )
    hidden = head.last_hidden_state.new_empty(batch, width, head.last_hidden_state.shape[-1])
    hidden = hidden.index_put((rest,), tail.last_hidden_state.reshape(-1, hidden.shape[-1]))
    return hidden.index_put((in_prefix,), head.last_hidden_state.expand(batch, -1, -1).reshape(-1, hidden.shape[-1]))


class FrozenLayer(DynamicLayer):
    """A cache layer holding a prefix's keys and values: each call returns ``prefix + new`` and stores nothing."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        return torch.cat([self.keys, key_states], dim=-2), torch.cat([self.values, value_states], dim=-2)


def freeze(cache) -> bool:
    """Make every layer of a filled ``DynamicCache`` a :class:`FrozenLayer`; False (cache unchanged) when
    some layer is another kind (sliding window, quantized), which must then not be checkpointed."""
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return False
    for layer in layers:
        layer.__class__ = FrozenLayer  # same state, read-only update
    return True


@contextmanager
def checkpointing_paused(layers: list):
    for layer in layers:
        layer.gradient_checkpointing = False
    try:
        yield
    finally:
        for layer in layers:
            layer.gradient_checkpointing = True


@contextmanager
def layers_keep_cache(layers: list):
    """Checkpointed layers keep the (frozen) cache they are given, inside."""
    for layer in layers:
        layer._can_checkpoint_with_cache = True
    try:
        yield
    finally:
        for layer in layers:
            del layer._can_checkpoint_with_cache  # back to the class's False


def cache_keyword(fn) -> str:
    """transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns until 6.0)."""
    return "cache" if "cache" in inspect.signature(fn).parameters else "past_key_values"


def generation_inputs(causal_lm, input_ids, attention_mask) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Left-padded prompts reordered as ``[shared prefix][padding][rest]``, and ``generate`` keywords
    that hand it the prefix's KV cache, computed once (empty when the rows share no prefix).

    Positions come from the attention mask, so every row sees the same positions and
    attention as in its left-padded form; the generated tokens follow the same width.
    """
    first, length = shared_prefix(input_ids, attention_mask)
    if not length:
        return input_ids, attention_mask, {}
    batch, width = input_ids.shape
    offsets = torch.arange(width, device=input_ids.device)
    in_prefix = (offsets >= first.unsqueeze(1)) & (offsets < first.unsqueeze(1) + length)
    prefix = input_ids[:1].masked_select(in_prefix[:1]).view(1, length)
    ids = torch.cat([prefix.expand(batch, -1), input_ids[~in_prefix].view(batch, width - length)], dim=1)
    mask = torch.cat([torch.ones_like(prefix).expand(batch, -1), attention_mask[~in_prefix].view(batch, width - length)], dim=1)
    trunk = getattr(causal_lm, causal_lm.base_model_prefix)
    cache = trunk(input_ids=prefix, use_cache=True)
    cache = getattr(cache, "cache", None) or cache.past_key_values
    cache.batch_repeat_interleave(batch)
    return ids, mask, {cache_keyword(causal_lm.generate): cache}
