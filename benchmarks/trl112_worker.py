"""TRL 1.12.0 PPO reference run for benchmarks/ppo_vs_trl112.py.

Runs inside benchmarks/.venv-trl112 (made by benchmarks/setup_trl112.sh), never in the
project's own environment: trl.experimental.ppo.PPOTrainer was removed in TRL 1.13.

    python benchmarks/trl112_worker.py --policy DIR --reward-model DIR --prompts FILE.jsonl \
        --updates N --seed S --threads 2 --dtype fp32|bf16 --out RESULT.json

One update = 8 prompts -> 32-token responses -> 1 PPO epoch on 1 mini-batch. The policy is
trained through a fresh LoRA adapter (r=8, all linear layers); its reference model is the
adapter-disabled base; the value model is a full trainable copy of the reward model.
Writes per-update wall seconds (the first includes warm-up; the caller drops it), the
reward model's mean score per update, generation seconds per update and peak RSS.
"""

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("ACCELERATE_USE_CPU", "true")

PROMPTS_PER_UPDATE = 8
PAD_TOKEN = "<|endoftext|>"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policy", required=True, help="causal-LM dir (fp32 safetensors + tokenizer)")
    p.add_argument("--reward-model", required=True, help="sequence-classification dir, num_labels=1")
    p.add_argument("--prompts", required=True, help='JSONL of {"input_ids": [...]} (chat template applied)')
    p.add_argument("--updates", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--learning-rate", type=float, default=3e-6, help="TRL PPOConfig's default: 3e-6")
    p.add_argument("--response-length", type=int, default=32)
    p.add_argument("--gradient-checkpointing", choices=("true", "false"), default="false",
                   help="PPOConfig.gradient_checkpointing (TRL's default is true)")
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


def peak_rss_gib():
    """Peak resident set size in GiB: this process, and the largest waited-for child."""
    self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    child_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return self_kib / 2**20, child_kib / 2**20


def load(args):
    """Tokenizer, policy, reward model, value model (a second, trainable copy of the RM), prompts."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.policy, padding_side="left")  # left: prompts are generated from
    tok.pad_token = PAD_TOKEN  # NOT eos: eos (<|im_end|>) is the stop token, pad positions are masked out
    assert tok.pad_token_id == 0, tok.pad_token_id
    policy = AutoModelForCausalLM.from_pretrained(args.policy, dtype="float32")
    reward = AutoModelForSequenceClassification.from_pretrained(args.reward_model, num_labels=1, dtype="float32")
    value = AutoModelForSequenceClassification.from_pretrained(args.reward_model, num_labels=1, dtype="float32")
    for m in (policy, reward, value):
        m.config.pad_token_id = tok.pad_token_id
    policy.generation_config.pad_token_id = tok.pad_token_id
    with open(args.prompts) as f:
        rows = [{"input_ids": json.loads(line)["input_ids"]} for line in f if line.strip()]
    need = PROMPTS_PER_UPDATE * args.updates
    rows = (rows * (need // len(rows) + 1))[:need]  # in order; cycle if the file is short
    return tok, policy, reward, value, Dataset.from_list(rows)


def make_trainer(args, tok, policy, reward, value, dataset, callback):
    from peft import LoraConfig
    from torch.utils.data import DataLoader
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    config = PPOConfig(
        output_dir=tempfile.mkdtemp(prefix="trl112-ppo-"),  # nothing is saved; removed after the run
        per_device_train_batch_size=PROMPTS_PER_UPDATE,
        gradient_accumulation_steps=1,
        num_mini_batches=1,
        num_ppo_epochs=1,
        total_episodes=PROMPTS_PER_UPDATE * args.updates,
        response_length=args.response_length,
        temperature=0.7,
        learning_rate=args.learning_rate,
        stop_token="eos",
        missing_eos_penalty=None,
        bf16=args.dtype == "bf16",  # TRL's base config defaults bf16=True: always set it
        gradient_checkpointing=args.gradient_checkpointing == "true",  # TRL's base config defaults it on
        use_cpu=True,
        seed=args.seed,
        num_sample_generations=0,
        eval_strategy="no",
        save_strategy="no",
        report_to="none",
        logging_steps=1,
        disable_tqdm=True,
    )
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = PPOTrainer(
        args=config, processing_class=tok, model=policy, ref_model=None, reward_model=reward,
        value_model=value, train_dataset=dataset, peft_config=lora, callbacks=[callback],
    )
    # PPOTrainer always builds a shuffled DataLoader; swap in an in-order one so both engines see
    # the same prompts in the same order (same collator, batch size and drop_last as TRL's).
    trainer.dataloader = trainer.accelerator.prepare(DataLoader(
        dataset, batch_size=PROMPTS_PER_UPDATE, shuffle=False, collate_fn=trainer.data_collator, drop_last=True))
    return trainer, config


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()
    if args.dtype == "bf16":
        # PPOTrainer builds its own Accelerator() without mixed_precision, and transformers 5 no longer
        # exports bf16=True to the environment, so pass it the way `accelerate launch` does.
        os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16"
    import torch
    import transformers
    from transformers import TrainerCallback
    from trl.experimental.ppo import ppo_trainer as trl_ppo

    torch.set_num_threads(args.threads)
    transformers.set_seed(args.seed)  # before the LoRA adapter is initialised

    # Time the rollout phases by wrapping the module-level functions PPOTrainer.train() calls:
    # batch_generation (generation), forward without grad (the reference pass; the policy's rollout
    # logprobs come from generation's logits), get_reward on the reward model (reward) and on the value model (value).
    phases = {name: [0.0] for name in ("generation", "reference", "reward", "value")}
    reward_models = []

    def timed(fn, phase_of):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                phase = phase_of(*a)
                if phase:
                    phases[phase][-1] += time.perf_counter() - t
        return wrapper

    trl_ppo.batch_generation = timed(trl_ppo.batch_generation, lambda *a: "generation")
    trl_ppo.forward = timed(trl_ppo.forward, lambda *a: None if torch.is_grad_enabled() else "reference")
    trl_ppo.get_reward = timed(trl_ppo.get_reward, lambda model, *a: "reward" if any(model is m for m in reward_models) else "value")

    class Recorder(TrainerCallback):
        def __init__(self):
            self.stamps, self.logs = [], []

        def on_train_begin(self, *_, **__):
            self.stamps.append(time.perf_counter())

        def on_log(self, _args, _state, _control, logs=None, **__):
            self.logs.append(dict(logs or {}))

        def on_step_end(self, *_, **__):  # called once per PPO update, after the optimizer step
            self.stamps.append(time.perf_counter())
            for seconds in phases.values():
                seconds.append(0.0)

    rec = Recorder()
    tok, policy, reward, value, dataset = load(args)
    reward_models.append(reward)
    trainer, config = make_trainer(args, tok, policy, reward, value, dataset, rec)
    t_setup = time.perf_counter() - t_start
    trainer.train()
    shutil.rmtree(config.output_dir, ignore_errors=True)

    per_update = [b - a for a, b in zip(rec.stamps, rec.stamps[1:])]
    logs = [entry for entry in rec.logs if "objective/scores" in entry]
    rss_self, rss_children = peak_rss_gib()
    packages = ("trl", "transformers", "torch", "peft", "accelerate", "datasets")
    versions = {name: __import__(name).__version__ for name in packages}
    result = {
        "impl": f"trl-{versions['trl']} PPOTrainer",
        "seconds_per_update": per_update,
        "generation_seconds_per_update": phases["generation"][: len(per_update)],
        "phase_seconds_per_update": {k: v[: len(per_update)] for k, v in phases.items()},
        "peak_rss_gib": max(rss_self, rss_children),
        "peak_rss_gib_self": rss_self,
        "peak_rss_gib_children": rss_children,
        "scores": [entry["objective/scores"] for entry in logs],
        "kl": [entry.get("objective/kl") for entry in logs],
        "setup_seconds": t_setup,
        "versions": versions,
        "settings": {
            "updates": args.updates, "seed": args.seed, "threads": torch.get_num_threads(), "dtype": args.dtype,
            "mixed_precision": trainer.accelerator.mixed_precision,
            "prompts_per_update": config.batch_size, "num_mini_batches": config.num_mini_batches,
            "num_ppo_epochs": config.num_ppo_epochs, "response_length": config.response_length,
            "temperature": config.temperature, "learning_rate": config.learning_rate, "kl_coef": config.kl_coef,
            "cliprange": config.cliprange, "vf_coef": config.vf_coef, "cliprange_value": config.cliprange_value,
            "gamma": config.gamma, "lam": config.lam, "kl_estimator": config.kl_estimator,
            "stop_token": config.stop_token, "missing_eos_penalty": config.missing_eos_penalty,
            "gradient_checkpointing": config.gradient_checkpointing,
            "lora": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear"},
            "value_model": "full trainable copy of the reward model", "ref_model": "policy with adapter disabled",
            "prompt_order": "file order (unshuffled)", "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id, "policy": os.path.abspath(args.policy),
            "reward_model": os.path.abspath(args.reward_model), "prompts": os.path.abspath(args.prompts),
        },
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: result[k] for k in ("seconds_per_update", "scores", "peak_rss_gib")}), file=sys.stderr)


if __name__ == "__main__":
    main()
