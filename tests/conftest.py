"""Fixtures: offline environment, a fresh plugin manager, the tiny models, one torch thread. Shared helpers
are in helpers.py."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RLHF_PLUG_DISABLE_PLUGIN_AUTOLOAD", "1")  # tests opt in to entry points

from helpers import build_tiny_model  # noqa: E402 (after the environment)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory) -> Path:
    """The tiny Llama with a peaked initial policy (``initializer_range=0.2``), for RL tests."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_policy") / "model", initializer_range=0.2)


@pytest.fixture(scope="module")
def one_thread():
    """torch on one intra-op thread: on a shared 2-core machine a second thread makes tiny models ~10x slower.

    Modules that train tiny models use it for every test: ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def pm():
    """A fresh plugin manager with only the defaults (no entry points)."""
    from rlhf_plug.plugins import get_plugin_manager

    return get_plugin_manager(autoload=False)


@pytest.fixture
def registries(pm):
    from rlhf_plug.registry import Registries

    return Registries(pm)


@pytest.fixture
def make_module(tmp_path, monkeypatch):
    """Write an importable module into tmp_path; forget it afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created = []

    def make(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        created.append(name)
        return name

    yield make
    for name in created:
        sys.modules.pop(name, None)
