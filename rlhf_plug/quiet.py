"""Silence one known-harmless library message, and nothing else.

bitsandbytes (0.50) logs "Failed to load CPU gemm_4bit_forward from kernels-community:
No module named 'kernels'…" at import on CPUs with AVX512-BF16, whether or not 4-bit
is used: it tries an optional Hub kernel and falls back to its own. It is noise on
every rlhf-plug command (and it broke the one-line error contract on such CPUs), so a
filter drops exactly that record. Every other bitsandbytes message still shows.
Only :mod:`logging` is imported here: the filter is installed before bitsandbytes loads.
"""

from __future__ import annotations

import logging

BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
OPTIONAL_KERNEL_MESSAGE = "Failed to load CPU gemm_4bit_forward from kernels-community"


def _not_optional_kernel_fallback(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(OPTIONAL_KERNEL_MESSAGE)


def install_library_filters() -> None:
    """Idempotent: the filter is added once per process."""
    logger = logging.getLogger(BNB_CPU_LOGGER)
    if _not_optional_kernel_fallback not in logger.filters:
        logger.addFilter(_not_optional_kernel_fallback)
