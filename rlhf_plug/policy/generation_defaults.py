"""Sampling that inherits nothing from a model's ``generation_config.json``.

transformers fills every field that a passed ``GenerationConfig`` leaves unset from the model's
own file. So a Qwen or Llama instruct model's ``repetition_penalty``, ``no_repeat_ngram_size``,
``suppress_tokens``, ``bad_words_ids``, ``min_length``, ``sequence_bias``... would reshape what is
sampled through logits processors that no trainer applies when it scores the same tokens: RL
training off-policy without a sign. Both our PPO rollout and TRL's GRPO/RLOO generation build
their own config, so the model's may contribute its token ids only.

peft copies its own ``generation_config`` onto the base model in ``generate``, so both are set.
"""

from __future__ import annotations

from contextlib import contextmanager

TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


def _holders(model) -> list:
    holders = [model]
    if hasattr(model, "get_base_model"):
        holders.append(model.get_base_model())
    return [m for m in holders if hasattr(m, "generation_config")]


def token_ids_only(config):
    """A fresh ``GenerationConfig`` with only ``config``'s special-token ids."""
    from transformers import GenerationConfig

    return GenerationConfig(**{k: getattr(config, k) for k in TOKEN_IDS if getattr(config, k, None) is not None})


@contextmanager
def generation_defaults_off(model):
    """Inside, ``model.generate`` inherits nothing but token ids from the model's own generation config.

    On the way out each holder gets back exactly what it had: a wrapper that only read the config
    through to the model it wraps (peft's ``__getattr__``) is left without an attribute of its own.
    """
    saved = [(m, m.__dict__.get("generation_config", _ABSENT), m.generation_config) for m in _holders(model)]
    try:
        for holder, _, config in saved:
            holder.generation_config = token_ids_only(config)
        yield
    finally:
        for holder, own, _ in reversed(saved):
            if own is _ABSENT:
                holder.__dict__.pop("generation_config", None)
            else:
                holder.generation_config = own


_ABSENT = object()
