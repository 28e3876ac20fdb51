"""Shared fixtures: offline env, a fresh plugin manager, and a tiny Llama built from a config."""

from __future__ import annotations

import json
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

REPO = Path(__file__).resolve().parents[1]
BUILTIN = REPO / "plugins" / "builtin_data"

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _corpus() -> list[str]:
    texts = []
    for name in ("demos", "rankings", "pretrain"):
        for line in (BUILTIN / f"{name}.jsonl").read_text().splitlines():
            texts.append(line)
    return texts + ["good answer", "bad answer", "The answer is good.", "The answer is bad."]


def build_tiny_model(target: Path, num_labels: int | None = None, initializer_range: float = 0.02) -> Path:
    """A 2-layer Llama with a small byte-level BPE tokenizer and a chat template.

    The default ``initializer_range`` gives a near-uniform next-token distribution
    that RL can hardly move; 0.2 gives a peaked one that PPO visibly changes.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token="<|im_start|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    import torch

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
        initializer_range=initializer_range,
    )
    LlamaForCausalLM(config).save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory) -> Path:
    """The tiny Llama with a peaked initial policy (``initializer_range=0.2``), for RL tests."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_policy") / "model", initializer_range=0.2)


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


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_recipe(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
