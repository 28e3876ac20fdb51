"""Helpers the tests share: the repository paths, a tiny model of each family built from a config, JSONL
files, and the CLI as a real subprocess. Fixtures stay in conftest.py (importing conftest is discouraged)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


BUILTIN = REPO / "plugins" / "data" / "builtin_data"


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


# Tiny random-init members of each model family PPO must serve (2 layers, hidden 64, the tiny tokenizer):
# (transformers config class, causal-LM class, family-specific settings).
FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {"head_dim": 16, "final_logit_softcapping": 30.0,
                                                     "attn_logit_softcapping": 50.0, "sliding_window": 16}),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", {"head_dim": 16, "sliding_window": 16,
                                                         "final_logit_softcapping": 30.0}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": None}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", {}),
}


def _family_config(family: str, tokenizer, initializer_range: float, **overrides):
    import transformers

    config_class, model_class, extra = FAMILIES[family]
    ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id, "bos_token_id": tokenizer.bos_token_id}
    if family == "gpt2":
        shape = {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 512}
    else:
        shape = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "num_key_value_heads": 2, "max_position_embeddings": 512}
    settings = {**ids, **shape, "vocab_size": len(tokenizer), "tie_word_embeddings": True,
                "initializer_range": initializer_range, **extra, **overrides}
    return getattr(transformers, config_class)(**settings), getattr(transformers, model_class)


def build_tiny_model(target: Path, num_labels: int | None = None, initializer_range: float = 0.02, family: str = "llama",
                     generation: dict | None = None, **config_overrides) -> Path:
    """A 2-layer model of ``family`` (:data:`FAMILIES`) with a small byte-level BPE tokenizer and a chat template.

    The default ``initializer_range`` gives a near-uniform next-token distribution
    that RL can hardly move; 0.2 gives a peaked one that PPO visibly changes.
    ``generation`` is written as the model's own ``generation_config.json``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, PreTrainedTokenizerFast

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
    config, model_class = _family_config(family, tokenizer, initializer_range, **config_overrides)
    model = model_class(config)
    if generation is not None:
        model.generation_config = GenerationConfig(**generation)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return target


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    """Every line's row; a blank or broken line fails the test (files we write have none)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_recipe(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


CLI_TIMEOUT = 300


HEAVY_MODULES = ("torch", "transformers", "trl", "matplotlib")


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RLHF_PLUG_PLUGINS", "RANK", "LOCAL_RANK")}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        RLHF_PLUG_DISABLE_PLUGIN_AUTOLOAD="1",
        COLUMNS="250",  # rich tables: no ellipses
        NO_COLOR="1",
        PYTHONWARNINGS="ignore",
    )
    return {**env, **extra}


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "rlhf_plug", *args]


def cli(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    """``rlhf-plug ARGS`` in a subprocess; ``env`` adds environment variables to :func:`cli_env`."""
    return subprocess.run(
        command(*args), cwd=cwd, env=cli_env(**env), capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False
    )


def assert_one_line_error(proc, *words: str) -> str:
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    line = lines[0]
    assert line.startswith("error: "), line
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    assert "Traceback" not in proc.stderr
    return line


def heavy_imports(*argv: str) -> tuple[int, list[str]]:
    """Run the CLI's ``main(argv)`` in a fresh interpreter: its exit status and which :data:`HEAVY_MODULES` it imported."""
    code = (
        "import sys\nfrom rlhf_plug.cli import main\n"
        "try:\n    status = main(sys.argv[1:])\nexcept SystemExit as exc:\n    status = exc.code or 0\n"
        f"print('IMPORTED', status, *[m for m in {HEAVY_MODULES!r} if m in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *argv], env=cli_env(), capture_output=True, text=True,
                          timeout=CLI_TIMEOUT, check=False)
    line = next((li for li in proc.stdout.splitlines() if li.startswith("IMPORTED ")), None)
    assert line is not None, proc.stdout + proc.stderr
    status, *modules = line.split()[1:]
    return int(status), modules


def temporary_files(run_dir: Path) -> list[Path]:
    """Hidden files and folders in a run folder besides its lock (``.lock`` stays: it only names the last run)."""
    return [p for p in Path(run_dir).glob(".*") if p.name != ".lock"]
