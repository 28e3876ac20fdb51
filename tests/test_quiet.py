"""bitsandbytes' optional-kernel notice is dropped; its other messages are not."""

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
