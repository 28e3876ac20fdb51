"""Decoding on CPU with every weight packed once per rollout for oneDNN.

At one token per step a rollout multiplies a few rows (the batch) by every weight.
``F.linear`` on CPU calls MKL's sgemm, which lays the whole weight out anew (packs it)
on every call; at 8 rows that costs more than the arithmetic. SmolLM2-135M, 2 threads:
the 1536 × 576 MLP weight takes 0.62 ms plain and 0.16 ms packed, the 49,152 × 576
LM head 17.0 ms and 6.1 ms; a 32-token rollout of 8 prompts 3.6–3.8 s plain and 3.1–3.2 s
packed, packing included (``benchmarks/RESULTS.md``).

We write this ourselves because nothing in torch or transformers packs weights for eager
decoding: it is what ``torch.compile``'s CPU freezing pass does (the same two oneDNN ops,
``mkldnn::_reorder_linear_weight`` and ``mkldnn::_linear_pointwise``), without its compile
time. The packed copies live for one rollout only (the policy's weights change every
step) and each module's own ``weight`` stays what it was, so nothing else sees a change.
Outputs match ``F.linear`` to float rounding (about 1e-6 relative), not bit for bit.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial
from typing import Iterable

import torch
from torch import nn


def can_pack(device, dtype: torch.dtype) -> bool:
    """fp32 on a CPU whose torch has oneDNN (x86 builds do), outside autocast; other cases keep ``F.linear``."""
    if getattr(device, "type", str(device)) != "cpu" or dtype != torch.float32:
        return False
    if torch.is_autocast_enabled("cpu"):  # F.linear would compute in the autocast dtype
        return False
    if not torch.backends.mkldnn.is_available():
        return False
    ops = getattr(torch.ops, "mkldnn", None)
    return all(hasattr(ops, name) for name in ("_reorder_linear_weight", "_linear_pointwise"))


def plain_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """(name, module) of the ``nn.Linear`` modules (not subclasses such as 4-bit layers) with fp32 weights."""
    return [(n, m) for n, m in model.named_modules() if type(m) is nn.Linear and m.weight.dtype == torch.float32]


def _packed_forward(packed: torch.Tensor, bias, x: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


@contextmanager
def packed_linears(weights: Iterable[tuple[nn.Linear, torch.Tensor]], rows: int):
    """Inside, each ``module`` computes ``x · weightᵀ + bias`` with ``weight`` packed for ``rows`` rows.

    ``weights`` is consumed one pair at a time, so a generator can compute each weight
    (a merged LoRA, say) and let it go once it is packed.
    """
    patched = []
    try:
        with torch.no_grad():
            for module, weight in weights:
                packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows)
                bias = None if module.bias is None else module.bias.detach()
                module.forward = partial(_packed_forward, packed, bias)  # an instance attribute shadows the method
                patched.append(module)
        yield
    finally:
        for module in patched:
            module.__dict__.pop("forward", None)
