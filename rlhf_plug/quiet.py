"""Silence one known-harmless library message, and nothing else.

bitsandbytes (0.50) logs "Failed to load CPU gemm_4bit_forward from kernels-community:
No module named 'kernels'…" at import on CPUs with AVX512-BF16, whether or not 4-bit
is used: it tries an optional Hub kernel and falls back to its own. It is noise on
every rlhf-plug command (and it broke the one-line error contract on such CPUs), so a
filter drops exactly that record. Every other bitsandbytes message still shows.
Only :mod:`logging` is imported here: the filter is installed before bitsandbytes loads.

The same goes for one transformers 5 FutureWarning: it renamed ``gradient_checkpointing`` to
``activation_checkpointing``, and TRL 1.16's configs still set the old name by default, so building
any TRL config warned (two lines on stderr, before the one-line error) whatever the recipe said.
"""

from __future__ import annotations

import logging
import warnings

BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
OPTIONAL_KERNEL_MESSAGE = "Failed to load CPU gemm_4bit_forward from kernels-community"


def _not_optional_kernel_fallback(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(OPTIONAL_KERNEL_MESSAGE)


#: transformers' rename warning for TRL's own default (see the module docstring).
CHECKPOINTING_RENAME = r"`gradient_checkpointing(_kwargs)?` is deprecated and will be removed in v6"


def install_library_filters() -> None:
    """Idempotent: the filters are added once per process."""
    warnings.filterwarnings("ignore", message=CHECKPOINTING_RENAME, category=FutureWarning)
    logger = logging.getLogger(BNB_CPU_LOGGER)
    if _not_optional_kernel_fallback not in logger.filters:
        logger.addFilter(_not_optional_kernel_fallback)
