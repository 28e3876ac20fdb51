"""SwiGLU MLPs that keep two intermediates for the backward pass instead of four.

A Llama-style MLP computes ``down(silu(gate(x)) * up(x))``. Eagerly, autograd keeps
four ``[tokens, intermediate]`` tensors per layer for the backward pass: ``gate(x)``
(for silu), ``silu(gate(x))`` and ``up(x)`` (for the product), and the product itself
(the input of ``down``'s LoRA A, whose weight gradient needs it). Here only
``gate(x)`` and ``up(x)`` are kept; the backward pass recomputes the other two,
elementwise. For SmolLM2-135M (intermediate 1536, 30 layers) that is 2 × 85 MiB
less saved memory per training forward of 8 × 78 tokens, for about 30 ms more
backward per update. The gradients are bit for bit those of the eager MLP: the
backward uses the same ATen kernels (``silu_backward``, ``mul``) on the same values.

torch offers selective activation checkpointing for this, but its policy works per
op type and would also keep every matmul output of the LoRA layers in the region;
a custom Function plus a saved-tensor hook keeps exactly the two inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _SwiGLU(torch.autograd.Function):
    """``silu(gate) * up``, keeping only ``gate`` and ``up`` for the backward pass."""

    @staticmethod
    def forward(ctx, gate, up):
        ctx.save_for_backward(gate, up)
        return F.silu(gate) * up

    @staticmethod
    def backward(ctx, grad):
        gate, up = ctx.saved_tensors
        grad_gate = torch.ops.aten.silu_backward(grad * up, gate) if ctx.needs_input_grad[0] else None
        grad_up = grad * F.silu(gate) if ctx.needs_input_grad[1] else None
        return grad_gate, grad_up


class _RecomputeProduct:
    """Saved-tensor hooks that store ``product`` (and views of it) as a recipe: recomputed from gate and up."""

    def __init__(self, product, gate, up):
        self.storage = product.untyped_storage().data_ptr()
        self.gate, self.up = gate, up

    def pack(self, tensor):
        if tensor.device.type == "meta" or tensor.untyped_storage().data_ptr() != self.storage:
            return tensor
        return (self, tensor.shape, tensor.stride(), tensor.storage_offset())

    @staticmethod
    def unpack(packed):
        if isinstance(packed, torch.Tensor):
            return packed
        recipe, shape, stride, offset = packed
        return (F.silu(recipe.gate) * recipe.up).as_strided(shape, stride, offset)


def lean_swiglu_forward(mlp, layer):
    """A forward for ``mlp`` (gate_proj, up_proj, down_proj, SiLU) that keeps two intermediates, not four.

    Not in a pass without gradients, nor while ``layer`` (the decoder layer around it) is checkpointed:
    there the checkpoint's own saved-tensor hooks must see every tensor the layer saves.
    """

    def forward(x):
        gate, up = mlp.gate_proj(x), mlp.up_proj(x)
        checkpointed = getattr(layer, "gradient_checkpointing", False) and layer.training
        if checkpointed or not (torch.is_grad_enabled() and (gate.requires_grad or up.requires_grad)):
            return mlp.down_proj(mlp.act_fn(gate) * up)
        product = _SwiGLU.apply(gate, up)
        hooks = _RecomputeProduct(product, gate, up)
        with torch.autograd.graph.saved_tensors_hooks(hooks.pack, hooks.unpack):
            return mlp.down_proj(product)

    return forward


def is_swiglu_mlp(module) -> bool:
    act = getattr(module, "act_fn", None)
    return (
        all(isinstance(getattr(module, n, None), torch.nn.Module) for n in ("gate_proj", "up_proj", "down_proj"))
        and (isinstance(act, torch.nn.SiLU) or type(act).__name__ == "SiLUActivation")
    )


def use_lean_swiglu(model) -> int:
    """Give every SwiGLU MLP of ``model`` (a decoder layer's ``mlp``) the lean forward; returns how many."""
    layers = [m for m in model.modules() if is_swiglu_mlp(getattr(m, "mlp", None))]
    for layer in layers:
        layer.mlp.forward = lean_swiglu_forward(layer.mlp, layer)
    return len(layers)
