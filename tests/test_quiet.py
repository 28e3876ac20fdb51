"""Known-harmless library messages are dropped (bitsandbytes' optional kernel, kernels' offline trust skip); others are not."""

from __future__ import annotations

import logging

import rlhf_plug  # noqa: F401  (installs the filter)
from rlhf_plug.quiet import BNB_CPU_LOGGER, install_library_filters


def test_only_the_optional_kernel_notice_is_silenced(caplog):
    install_library_filters()  # idempotent
    logger = logging.getLogger(BNB_CPU_LOGGER)
    assert len(logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger=BNB_CPU_LOGGER):
        logger.warning(
            "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already "
            "`pip install kernels` and the kernels >= 0.11.1", ModuleNotFoundError("No module named 'kernels'")
        )
        logger.warning("a real bitsandbytes problem")
        logger.error("Failed to load the CPU library")
    assert [r.getMessage() for r in caplog.records] == ["a real bitsandbytes problem", "Failed to load the CPU library"]


def test_only_the_offline_trust_skip_of_kernels_is_silenced(caplog):
    """transformers 5.25 installs `kernels`, which warns offline on every model load (broke one-line errors)."""
    from rlhf_plug.quiet import KERNELS_HUB_LOGGER

    install_library_filters()
    logger = logging.getLogger(KERNELS_HUB_LOGGER)
    assert len(logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger=KERNELS_HUB_LOGGER):
        logger.warning("Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes' because "
                       "Hugging Face Hub is in offline mode.")
        logger.warning("kernel 'x' is not from a trusted publisher")
    assert [r.getMessage() for r in caplog.records] == ["kernel 'x' is not from a trusted publisher"]
