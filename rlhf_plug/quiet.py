"""Silence one known-harmless library message, and nothing else.

bitsandbytes (0.50) logs "Failed to load CPU gemm_4bit_forward from kernels-community:
No module named 'kernels'…" at import on CPUs with AVX512-BF16, whether or not 4-bit
is used: it tries an optional Hub kernel and falls back to its own. It is noise on
every rlhf-plug command (and it broke the one-line error contract on such CPUs), so a
filter drops exactly that record. Every other bitsandbytes message still shows.
Only :mod:`logging` is imported here: the filter is installed before bitsandbytes loads.

With ``kernels`` installed (transformers 5.25 requires it), the same optional bitsandbytes kernel
is looked up on the Hub instead, and with ``HF_HUB_OFFLINE=1`` kernels warns "Skipping publisher
trust check for 'kernels-community/quantization-bitsandbytes' because Hugging Face Hub is in
offline mode." on every command that loads a model: only a kernel already in the local cache can
load offline, so the check it skips was made when that kernel was downloaded. That record is
dropped too; kernels' other messages still show.

The same goes for one transformers 5 FutureWarning: it renamed ``gradient_checkpointing`` to
``activation_checkpointing``, and TRL 1.16's configs still set the old name by default, so building
any TRL config warned (two lines on stderr, before the one-line error) whatever the recipe said.
"""

from __future__ import annotations

import logging
import warnings

BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
OPTIONAL_KERNEL_MESSAGE = "Failed to load CPU gemm_4bit_forward from kernels-community"


KERNELS_HUB_LOGGER = "kernels._internals.hf_hub"
OFFLINE_TRUST_MESSAGE = "Skipping publisher trust check for"


def _not_optional_kernel_fallback(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(OPTIONAL_KERNEL_MESSAGE)


def _not_offline_trust_skip(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(OFFLINE_TRUST_MESSAGE)


#: transformers' rename warning for TRL's own default (see the module docstring).
CHECKPOINTING_RENAME = r"`gradient_checkpointing(_kwargs)?` is deprecated and will be removed in v6"


def install_library_filters() -> None:
    """Idempotent: the filters are added once per process."""
    warnings.filterwarnings("ignore", message=CHECKPOINTING_RENAME, category=FutureWarning)
    for name, keep in ((BNB_CPU_LOGGER, _not_optional_kernel_fallback), (KERNELS_HUB_LOGGER, _not_offline_trust_skip)):
        logger = logging.getLogger(name)
        if keep not in logger.filters:
            logger.addFilter(keep)
