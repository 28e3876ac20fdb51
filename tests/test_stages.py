"""SFT and reward stages on a tiny Llama built from a config (plus the 4-bit path on CPU)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from helpers import write_jsonl, write_recipe
from rich.console import Console

from rlhf_plug.recipe import load_recipe
from rlhf_plug.runner import run_recipe


def _run(tmp_path: Path, registries, pm, body: str, overrides=()) -> tuple[dict, Path]:
    recipe = write_recipe(tmp_path / "recipe.yaml", body)
    loaded = load_recipe(recipe, registries, list(overrides))
    results = run_recipe(loaded, registries, pm, Console(file=io.StringIO(), width=200))
    return results, tmp_path / "runs" / loaded.recipe.name


def _toy_rankings(path: Path, n: int = 48) -> Path:
    """Separable rankings: 'good' answers always beat 'bad' ones."""
    rows = []
    for i in range(n):
        prompt = [{"role": "user", "content": f"Question number {i}: is this good?"}]
        completions = [
            [{"role": "assistant", "content": "The answer is good."}],
            [{"role": "assistant", "content": "good answer"}],
            [{"role": "assistant", "content": "bad answer"}],
            [{"role": "assistant", "content": "The answer is bad."}],
        ]
        rows.append({"prompt": prompt, "completions": completions})
    return write_jsonl(path, rows)


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


SFT = """
name: sft-test
model: {model}
output_dir: {out}
quantization: {quant}
stages:
  - sft:
      data: {{use: builtin, with: {{name: demos}}, limit: 64, eval_fraction: 0.25}}
      lora: {{r: 8, lora_alpha: 16}}
      args: {{max_steps: {steps}, learning_rate: 3.0e-3, per_device_train_batch_size: 8, max_length: 128}}
"""


def test_sft_stage_lowers_loss_changes_weights_and_saves(tmp_path, tiny_model, registries, pm):
    body = SFT.format(model=tiny_model, out=tmp_path / "runs", quant="none", steps=12)
    results, run = _run(tmp_path, registries, pm, body)
    sft = results["sft"]
    assert sft["eval_loss_after"] < sft["eval_loss_before"] - 0.1
    assert sft["steps"] == 12
    out = run / "sft"
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "tokenizer.json").is_file()
    base, merged = _weights(tiny_model), _weights(out / "model")
    changed = [k for k in base if "proj" in k and not base[k].equal(merged[k])]
    assert changed, "merging the LoRA adapter should change projection weights"
    losses = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(1 for m in losses if m["split"] == "train" and "loss" in m) == 12
    assert json.loads((out / "results.json").read_text())["steps"] == 12
    assert not list(run.glob(".*partial")), "no temporary stage folder may be left behind"


def test_sft_stage_4bit_on_cpu(tmp_path, tiny_model, registries, pm):
    pytest.importorskip("bitsandbytes")
    body = SFT.format(model=tiny_model, out=tmp_path / "runs", quant="4bit", steps=8)
    results, run = _run(tmp_path, registries, pm, body)
    sft = results["sft"]
    assert sft["quantization"] == "nf4-4bit"
    assert sft["eval_loss_after"] < sft["eval_loss_before"]
    assert (run / "sft" / "model" / "model.safetensors").is_file()


REWARD = """
name: rm-test
model: {model}
output_dir: {out}
quantization: none
stages:
  - reward:
      data: {{use: file, with: {{path: {data}}}, eval_fraction: 0.25}}
      lora: {{r: 8, lora_alpha: 16}}
      args: {{max_steps: 30, learning_rate: 5.0e-3, per_device_train_batch_size: 8, max_length: 128}}
      judges: [{{use: simulated_annotator}}]
      evaluators: [{{use: rm_accuracy}}, {{use: judge_agreement}}]
"""


def test_reward_stage_learns_separable_rankings(tmp_path, tiny_model, registries, pm):
    data = _toy_rankings(tmp_path / "rankings.jsonl")
    body = REWARD.format(model=tiny_model, out=tmp_path / "runs", data=data)
    results, run = _run(tmp_path, registries, pm, body)
    rm = results["reward"]
    assert rm["train_pairs"] == 36 * 6 and rm["eval_pairs"] == 12 * 6  # 4 completions -> 6 pairs per prompt
    assert rm["eval_rm_accuracy_after"] >= 0.9
    assert rm["eval_rm_accuracy_after"] > rm["eval_rm_accuracy_before"]
    assert "eval_simulated_annotator_agreement_after" in rm
    assert rm["answer_dedup_factor"] >= 1.8  # pairs of one ranking share a batch: 12 sequences, 4 distinct
    assert (run / "reward" / "model" / "model.safetensors").is_file()


def test_dedup_forward_matches_plain_forward(tiny_model):
    """Scoring each distinct row once gives the same logits and gradients as scoring every row."""
    import torch
    from rlhf_plug_plugins.stages.reward_training import DedupForward
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model), num_labels=1)
    model.config.pad_token_id = 0
    full, padded = ([5, 6, 7, 8], [1, 1, 1, 1]), ([5, 6, 9, 0], [1, 1, 1, 0])
    rows = [full, padded, full, padded, full, padded]  # chosen rows then rejected rows, as TRL's collator stacks them
    ids, mask = torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])
    dedup = DedupForward(model)
    results = []
    for forward in (model, dedup):
        model.zero_grad()
        logits = forward(input_ids=ids, attention_mask=mask).logits
        logits.sum().backward()
        results.append((logits.detach(), model.score.weight.grad.clone()))
    assert (dedup.rows_in, dedup.rows_run) == (6, 2)
    assert torch.allclose(results[0][0], results[1][0], atol=1e-5)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-4)


def test_reward_scoring_matches_trl_tokenisation(tiny_model):
    """The learned-RM scorer must format text exactly as trl.RewardTrainer does."""
    from datasets import Dataset
    from rlhf_plug.rm_scoring import reward_input_ids
    from trl import RewardConfig, RewardTrainer

    from rlhf_plug.models import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model))
    rows = [
        {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "good"}],
         "rejected": [{"role": "assistant", "content": "bad"}]},
    ]
    text_rows = [{"prompt": "Q: hi\nA:", "chosen": " good", "rejected": " bad"}]
    args = RewardConfig(output_dir="unused", use_cpu=True, bf16=False, report_to="none")
    for data in (rows, text_rows):
        prepared = RewardTrainer._prepare_dataset(None, Dataset.from_list(data), tokenizer, args, "t")
        expected = prepared[0]["chosen_ids"]
        assert reward_input_ids(tokenizer, data[0]["prompt"], data[0]["chosen"]) == expected


CHAIN = """
name: chain
model: {model}
output_dir: {out}
quantization: none
stages:
  - sft:
      data: {{use: builtin, with: {{name: demos}}, limit: 32}}
      args: {{max_steps: 2, per_device_train_batch_size: 8, max_length: 128}}
  - reward:
      data: {{use: builtin, with: {{name: rankings}}, limit: 12}}
      args: {{max_steps: 2, per_device_train_batch_size: 8, max_length: 128}}
"""


def test_reward_stage_starts_from_sft_output_and_resume_skips(tmp_path, tiny_model, registries, pm):
    body = CHAIN.format(model=tiny_model, out=tmp_path / "runs")
    results, run = _run(tmp_path, registries, pm, body)
    assert results["reward"]["base_model"] == str(run / "sft" / "model")
    assert results["sft"]["base_model"] == str(tiny_model)
    first = (run / "sft" / "model" / "model.safetensors").stat().st_mtime_ns
    loaded = load_recipe(tmp_path / "recipe.yaml", registries)
    again = run_recipe(loaded, registries, pm, Console(file=io.StringIO()), resume=True)
    assert again == results
    assert (run / "sft" / "model" / "model.safetensors").stat().st_mtime_ns == first
