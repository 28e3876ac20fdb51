"""The peak memory of one stage, for the method comparison: GPU memory on CUDA, else resident memory.

The process's peak resident set (``VmHWM``) only ever grows, so a later stage would report the peak
of an earlier one. Linux resets it when ``5`` is written to ``/proc/self/clear_refs``; where that is
not possible the figure is the process's peak so far (``ru_maxrss``), and says so.
"""

from __future__ import annotations

from pathlib import Path

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


def reset_peak_memory() -> bool:
    """Start measuring now; False where only the process-wide peak can be read."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return True
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_memory() -> dict[str, float | str]:
    """``peak_memory_mb`` since :func:`reset_peak_memory`, and what it measured (``peak_memory_kind``)."""
    import torch

    if torch.cuda.is_available():
        return {"peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1), "peak_memory_kind": "cuda allocated"}
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return {"peak_memory_mb": round(int(line.split()[1]) / 1024, 1), "peak_memory_kind": "resident (VmHWM)"}
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    return {"peak_memory_mb": round(peak, 1), "peak_memory_kind": "process peak (ru_maxrss)"}
