"""rlhf-plug PPO side of benchmarks/ppo_vs_trl112.py: the same settings as trl112_worker.py.

Runs the real ``ppo`` stage (through a recipe, as a user would) with the learned
RM loaded as an adapter on the shared base, and writes the same JSON as the TRL
worker: per-update seconds, generation seconds, RM score per update, peak RSS.
"""

import argparse
import io
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("RLHF_PLUG_DISABLE_PLUGIN_AUTOLOAD", "1")

RECIPE = """
name: bench
model: {policy}
output_dir: {out}
quantization: none
seed: {seed}
stages:
  - ppo:
      prompts: {{use: file, with: {{path: {prompts}}}, eval_fraction: 0.0}}
      reward: [{{use: learned_rm, with: {{model: {reward}}}}}]
      kl: {{use: fixed, with: {{init: 0.05}}}}
      loss: {{use: ppo_clip, with: {{cliprange: 0.2, cliprange_value: 0.2, vf_coef: 0.1}}}}
      generation: {{max_new_tokens: {max_new_tokens}, temperature: 0.7}}
      lora: {{r: 8, lora_alpha: 16, lora_dropout: 0.0, target_modules: all-linear}}
      evaluators: []
      args:
        steps: {updates}
        batch_size: 8
        mini_batches: 1
        ppo_epochs: 1
        shuffle: false
        learning_rate: {lr}
        reward_norm: none
        reward_clip: null
        value_model: {value_model}
        bf16: {bf16}
        max_prompt_length: 1024
        gradient_checkpointing: {checkpointing}
"""


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policy", required=True)
    p.add_argument("--reward", required=True, help="a reward stage folder (adapter/ trained on --policy)")
    p.add_argument("--prompts", required=True, help='JSONL with a "prompt" column (messages)')
    p.add_argument("--updates", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--value-model", choices=("trunk", "adapter"), default="trunk")
    p.add_argument("--response-length", type=int, default=32)
    p.add_argument("--gradient-checkpointing", choices=("auto", "true", "false"), default="auto")
    p.add_argument("--set", action="append", default=[], help="a recipe override, as `rlhf-plug run --set` takes")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    import torch
    from rich.console import Console

    torch.set_num_threads(args.threads)
    from rlhf_plug.plugins import get_plugin_manager
    from rlhf_plug.recipe import load_recipe
    from rlhf_plug.registry import Registries
    from rlhf_plug.runner import run_recipe

    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp) / "bench.yaml"
        recipe.write_text(RECIPE.format(
            policy=args.policy, out=Path(tmp) / "runs", seed=args.seed, prompts=args.prompts, reward=args.reward,
            updates=args.updates, lr=args.learning_rate, value_model=args.value_model,
            bf16="true" if args.dtype == "bf16" else "false", max_new_tokens=args.response_length,
            checkpointing=args.gradient_checkpointing,
        ))
        pm = get_plugin_manager(autoload=False)
        registries = Registries(pm)
        start = time.perf_counter()
        loaded = load_recipe(recipe, registries, list(args.set))
        results = run_recipe(loaded, registries, pm, Console(file=io.StringIO()))["ppo"]
        total = time.perf_counter() - start
        rows = [json.loads(x) for x in (Path(tmp) / "runs" / "bench" / "ppo" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    phases = {"generation": "time/rollout", "reference": "time/reference", "reward": "time/reward", "update": "time/update"}
    out = {
        "impl": f"rlhf-plug PPO (value: {args.value_model})",
        "seconds_per_update": [r["time/step"] for r in train],
        "generation_seconds_per_update": [r["time/rollout"] for r in train],
        "phase_seconds_per_update": {k: [r.get(key, float("nan")) for r in train] for k, key in phases.items()},
        "scores": [r["reward"] for r in train],
        "kl": [r["kl"] for r in train],
        "peak_rss_gib": peak,
        "total_seconds": total,
        "rewards_sharing_base": results.get("rewards_sharing_base"),
        "trainable_parameters": results.get("trainable_parameters"),
        "versions": _versions(),
        "settings": {"dtype": args.dtype, "threads": args.threads, "learning_rate": args.learning_rate,
                     "value_model": args.value_model, "updates": args.updates, "seed": args.seed,
                     "response_length": args.response_length, "gradient_checkpointing": args.gradient_checkpointing,
                     "overrides": args.set},
    }
    Path(args.out).write_text(json.dumps(out, indent=2))


def _versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("rlhf-plug", "torch", "transformers", "peft", "accelerate", "trl")}


if __name__ == "__main__":
    sys.exit(main())
