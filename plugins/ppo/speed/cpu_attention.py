"""Grouped-query attention without repeated keys and values on CPU.

For a model with fewer key/value heads than query heads (SmolLM2-135M: 3 against 9),
transformers' SDPA path copies each key and value head to every query head it serves
before calling ``scaled_dot_product_attention`` whenever there is an attention mask,
because CUDA's fast kernels need it. torch's CPU flash kernel takes the grouped heads
and a mask directly (``enable_gqa``), with bit-identical outputs. The copies are what a
training forward keeps for the backward pass: at 8 × 69 tokens they are 74 of the
535 MiB of saved activations, and a third of that is enough.

``TRANSFORMERS_SDPA_FORCE_GQA`` is transformers' own switch for this; it is read at each
call, so it is set for the whole PPO stage (a checkpointed layer's recompute in the
backward pass must take the same path) and restored after.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

SWITCH = "TRANSFORMERS_SDPA_FORCE_GQA"


@contextmanager
def grouped_attention_on_cpu(device):
    if getattr(device, "type", str(device)) != "cpu" or SWITCH in os.environ:
        yield
        return
    os.environ[SWITCH] = "1"
    try:
        yield
    finally:
        os.environ.pop(SWITCH, None)
