"""Give the heap's freed pages back to the OS inside a PPO training forward.

A training forward frees hundreds of MiB of activation-sized temporaries while
it keeps the activations the backward needs. glibc keeps freed blocks below its
mmap threshold in the heap (the threshold rises to the size of every large block
freed), interleaved with the kept ones, and the logits, softmax and backward that
follow have other shapes and mostly cannot reuse them. RSS then peaks at live
memory plus that leftover. ``malloc_trim(0)`` hands every whole free page back
(glibc >= 2.8 releases pages inside the heap, not only at its top).

Where: before the LM head's logits and after the training forward (two calls per
update), when the ``ppo`` arg ``release_freed_memory`` is on. Short PPO benchmark
(SmolLM2-135M, 8 x 78 tokens): over 5 updates peak RSS 2.36 -> 2.10 GiB, for about
100k more page faults per update (0.4 GiB faulted in again); over 10 updates,
2.55-2.74 -> 2.48-2.51 GiB for 6 % more time per update, page faults being dear in
a VM. Off by default for that cost. Releasing after every phase instead
(sampling, reward, reference, training) gave no lower peak for 4.6 times as many
extra faults (benchmarks/RESULTS.md).

Neither torch nor accelerate offers this for the CPU heap (``torch.cuda.empty_cache``
is the CUDA allocator's counterpart), hence our own few lines. Elsewhere than glibc
(macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def release_freed_memory() -> bool:
    """Return the heap's free pages to the OS; True where the C library could do it (glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
