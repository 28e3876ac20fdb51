"""Training forwards that keep only the activations that are dear to recompute.

LoRA's A matrices need their layer's input for their weight gradients, so autograd
keeps every input of every adapted linear layer. Some of those inputs cost almost
nothing to compute again from tensors that are kept anyway:

* an RMSNorm's output (the input of q/k/v and of gate/up) from the norm's input,
  which the norm keeps for its own backward pass;
* a SwiGLU MLP's ``silu(gate(x)) * up(x)`` (the input of ``down``) and
  ``silu(gate(x))``, from ``gate(x)`` and ``up(x)``.

So a Llama-style layer keeps two ``[tokens, intermediate]`` tensors instead of
four, and no norm output. For SmolLM2-135M (30 layers, hidden 576, intermediate
1536) a training forward of 8 × 78 tokens keeps 466 MiB instead of 767 MiB, for a
few tens of ms of elementwise work in the backward pass (not measurable against
the 3 s of forward and backward). The recomputed values, and so the gradients, are
bit for bit those of the eager pass: the same ATen kernels run on the same inputs.

The saving is an fp32 one. Under bf16 autocast, or with 16-bit or 4-bit weights and fp32
LoRA, the adapted layers keep cast copies of their inputs, which no recipe replaces: there
only ``silu(gate(x))`` is dropped (gradients unchanged), and ``gradient_checkpointing: auto``
budgets with the eager figure. Only MLPs whose forward is exactly the plain SwiGLU are
patched (``PLAIN_SWIGLU``); an output changed in place after it was registered is kept as a
tensor, and a recipe whose inputs changed in place raises rather than recompute wrong values.

How: during a training forward (:func:`recompute_cheap_activations`) the patched
norms and MLPs register their outputs with a recipe; a saved-tensor hook stores
those outputs (and views of them) as the recipe, and the backward pass runs it.
Layers under gradient checkpointing are left to the checkpoint's own hooks, which
are innermost there. torch's selective activation checkpointing chooses per op type
and would keep every LoRA matmul output in the region, hence our own hooks.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_registry: dict[int, weakref.ref] | None = None  # data_ptr -> the output; None outside a training forward


@dataclass
class _Recipe:
    """How to compute a registered output again, and the state it was computed in."""

    compute: Callable[[], torch.Tensor]
    inputs: tuple[torch.Tensor, ...]
    input_versions: tuple[int, ...]
    output_version: int
    device: str
    autocast: tuple[bool, torch.dtype]  # the forward's, for the backward pass's recompute

    def run(self) -> torch.Tensor:
        if tuple(t._version for t in self.inputs) != self.input_versions:
            raise RuntimeError(
                "a tensor that a lean activation is recomputed from was modified in place after the forward pass; "
                "set ppo.args.lean_activations=false for this model"
            )
        enabled, dtype = self.autocast
        with torch.no_grad(), torch.autocast(self.device, dtype=dtype, enabled=enabled):
            return self.compute()


def _register(output: torch.Tensor, compute, *inputs: torch.Tensor) -> None:
    """The recipe lives on the output: when a checkpointed layer drops the output, its inputs go too."""
    whole = output.is_contiguous() and output.storage_offset() == 0
    if _registry is not None and whole and output.numel() * output.element_size() == output.untyped_storage().nbytes():
        device = output.device.type
        autocast = torch.is_autocast_enabled(device), torch.get_autocast_dtype(device)
        versions = tuple(t._version for t in inputs)
        output._lean_recipe = _Recipe(compute, inputs, versions, output._version, device, autocast)
        _registry[output.untyped_storage().data_ptr()] = weakref.ref(output)


def _pack(tensor):
    ref = _registry.get(tensor.untyped_storage().data_ptr()) if _registry and tensor.numel() else None
    output = ref() if ref is not None else None
    # Not registered; dead (its address may now hold another tensor); changed in place since; or seen as another dtype.
    if output is None or output._version != output._lean_recipe.output_version or tensor.dtype != output.dtype:
        return tensor
    return output._lean_recipe, tensor.shape, tensor.stride(), tensor.storage_offset()


def _unpack(packed):
    if isinstance(packed, torch.Tensor):
        return packed
    recipe, shape, stride, offset = packed
    return recipe.run().as_strided(shape, stride, offset)


@contextmanager
def recompute_cheap_activations():
    """Within: registered outputs are saved for the backward pass as recipes, not tensors."""
    global _registry
    outer, _registry = _registry, {}
    try:
        with torch.autograd.graph.saved_tensors_hooks(_pack, _unpack):
            yield
    finally:
        _registry = outer


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


def _swiglu_forward(mlp):
    plain = type(mlp).forward.__get__(mlp)

    def forward(x):
        if not torch.is_grad_enabled():
            return plain(x)
        gate, up = mlp.gate_proj(x), mlp.up_proj(x)
        if not (gate.requires_grad or up.requires_grad):
            return mlp.down_proj(mlp.act_fn(gate) * up)
        # Checkpointing compares what a layer saves in its forward and in its recompute (outside any
        # training forward's registry): both run this same Function whenever gradients flow.
        product = _SwiGLU.apply(gate, up)
        _register(product, lambda: F.silu(gate) * up, gate, up)
        return mlp.down_proj(product)

    return forward


def _norm_forward(plain_forward):
    def forward(hidden):
        out = plain_forward(hidden)
        # In fp32 the norm keeps its input for its own backward pass, so the recipe costs nothing; in 16-bit
        # it keeps an fp32 copy, and holding the input would cost as much as the output saves.
        if out.requires_grad and hidden.dtype == out.dtype == torch.float32:
            _register(out, lambda: plain_forward(hidden), hidden)
        return out

    return forward


# The forward of a plain SwiGLU MLP in transformers (Llama, Mistral, Qwen2/3, OLMo, ...), statement by statement.
# MLPs that scale, clamp or upcast (Falcon-H1, DeepSeek-V4, ...) have other statements and keep their own forward.
PLAIN_SWIGLU = (
    ("down_proj = self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))", "return down_proj"),
    ("return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))",),
)


def is_swiglu_mlp(module) -> bool:
    act = getattr(module, "act_fn", None)
    parts = all(isinstance(getattr(module, n, None), torch.nn.Module) for n in ("gate_proj", "up_proj", "down_proj"))
    silu = isinstance(act, torch.nn.SiLU) or type(act).__name__ == "SiLUActivation"
    return parts and silu and _has_plain_swiglu_forward(type(module))


@functools.cache
def _has_plain_swiglu_forward(cls) -> bool:
    try:
        lines = inspect.getsource(cls.forward).splitlines()[1:]
    except (OSError, TypeError):
        return False
    statements = tuple(line.strip() for line in lines if line.strip() and not line.strip().startswith(("#", '"""')))
    return statements in PLAIN_SWIGLU


def is_rms_norm(module) -> bool:
    return type(module).__name__.endswith("RMSNorm")


def use_lean_activations(model) -> dict[str, int]:
    """Patch ``model``'s SwiGLU MLPs and RMSNorms to register their outputs; returns how many of each.

    The forwards are instance attributes (``module.__dict__``); patching twice changes nothing.
    """
    mlps = [m for m in model.modules() if is_swiglu_mlp(m)]
    norms = [m for m in model.modules() if is_rms_norm(m)]
    for mlp in (m for m in mlps if "forward" not in m.__dict__):
        mlp.forward = _swiglu_forward(mlp)
    for norm in (m for m in norms if "forward" not in m.__dict__):
        norm.forward = _norm_forward(norm.forward)
    return {"mlps": len(mlps), "norms": len(norms)}
