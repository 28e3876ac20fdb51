"""Our reward stage against plain ``trl.RewardTrainer`` on real HH-RLHF pairs, side by side.

    python benchmarks/hh_rm.py                                   # 1,500 train / 312 held-out, max_length 320
    python benchmarks/hh_rm.py --max-length 1024 --steps 6 --no-eval   # peak memory at long inputs
    python benchmarks/hh_rm.py --set truncation=drop --set args.learning_rate=3e-4   # one lever

Data: ``../shared/data/hh-rlhf/harmless-dev.jsonl.gz`` (1,812 harmless-base pairs), split by
row: the first ``--train`` rows train, the rest are held out. Same model (the embedded
SmolLM2-135M-Instruct), same LoRA (r=16, alpha 32, all linear layers), batch 8, the same
number of optimiser steps, seed 0, 2 threads.

- **trl**: ``trl.RewardTrainer`` as a user would call it, with ``RewardConfig`` defaults
  (gradient checkpointing on, pairs over ``max_length`` dropped).
- **ours**: ``rlhf-plug run`` on a one-stage recipe (the ``reward`` stage with its defaults),
  through the real CLI.

Each side runs in a fresh process, the sides alternate, and each reports train time
(``trainer.train()``), the process's wall time and peak RSS. Held-out accuracy is the
fraction of the held-out pairs whose chosen answer the model scores higher, every pair
scored by the same function (``rlhf_plug.rm_scoring.score``, prompt cut from the left
at ``max_length``), so both models are judged on the same inputs, long pairs included.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEV_FILE = REPO.parent / "shared" / "data" / "hh-rlhf" / "harmless-dev.jsonl.gz"
ENV = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "OMP_NUM_THREADS": "2"}
LORA = {"r": 16, "lora_alpha": 32}


def read_pairs(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# --- held-out accuracy (same scorer for both sides) ---------------------------------


def held_out_accuracy(model, tokenizer, pairs: list[dict], max_length: int) -> dict:
    from rlhf_plug.data import pair_with_prompt
    from rlhf_plug.encoding import encode_prompt_answer
    from rlhf_plug.rm_scoring import score

    rows = [pair_with_prompt(p) for p in pairs]
    prompts = [r["prompt"] for r in rows]
    chosen = score(model, tokenizer, prompts, [r["chosen"] for r in rows], 8, max_length)
    rejected = score(model, tokenizer, prompts, [r["rejected"] for r in rows], 8, max_length)
    wins = [c > r for c, r in zip(chosen, rejected)]
    short = [
        w for w, r in zip(wins, rows)
        if all(len(encode_prompt_answer(tokenizer, r["prompt"], r[k]).input_ids) <= max_length for k in ("chosen", "rejected"))
    ]
    return {"accuracy": sum(wins) / len(wins), "pairs": len(wins), "accuracy_short": sum(short) / max(len(short), 1), "short_pairs": len(short)}


# --- workers -------------------------------------------------------------------------


def trl_worker(opts, train: list[dict], held: list[dict], model_path: str) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from rlhf_plug.models import load_tokenizer, lora_config

    tokenizer = load_tokenizer(model_path)
    model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    import yaml

    extra = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in opts.trl_set)}
    if opts.trl_longest_first:  # its longest kept pairs first, as our length-grouped sampler puts ours: peak memory at once
        def longest(row):  # tokens of the longer side, EOS included, as TRL counts them
            return max(len(tokenizer(text=row[k] + tokenizer.eos_token)["input_ids"]) for k in ("chosen", "rejected"))

        train = sorted((r for r in train if longest(r) <= opts.max_length), key=longest, reverse=True)
        extra["train_sampling_strategy"] = "sequential"
    args = RewardConfig(
        output_dir=str(Path(opts.scratch) / "trl"), max_length=opts.max_length, per_device_train_batch_size=opts.batch,
        **({"learning_rate": opts.lr} if opts.lr else {}), max_steps=opts.steps, seed=opts.seed, use_cpu=True, bf16=False, report_to="none",
        save_strategy="no", logging_steps=10, disable_tqdm=True, **extra,
    )
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(train), processing_class=tokenizer,
        peft_config=lora_config(LORA, "SEQ_CLS"),
    )
    kept = len(trainer.train_dataset)
    output = trainer.train()
    result = {"train_seconds": output.metrics["train_runtime"], "steps": trainer.state.global_step, "train_pairs_used": kept,
              "learning_rate": args.learning_rate}
    if not opts.no_eval:
        result.update(held_out_accuracy(trainer.model, tokenizer, held, opts.max_length))
    return result


def ours_worker(opts, train: list[dict], held: list[dict], model_path: str) -> dict:
    import yaml

    from rlhf_plug.cli import main
    from rlhf_plug.models import load_tokenizer

    scratch = Path(opts.scratch)
    data = scratch / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in train), encoding="utf-8")
    stage = {
        "data": {"use": "file", "with": {"path": str(data)}, "eval_fraction": 0.0},
        "lora": LORA,
        "evaluators": [],
        "args": {"max_steps": opts.steps, **({"learning_rate": opts.lr} if opts.lr else {}),
                 "per_device_train_batch_size": opts.batch, "max_length": opts.max_length, "logging_steps": 10},
    }
    for item in opts.set:
        key, value = item.split("=", 1)
        *parents, last = key.split(".")
        target = stage
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = yaml.safe_load(value)
    recipe = {"name": "hh-rm-bench", "model": model_path, "seed": opts.seed, "output_dir": str(scratch / "runs"), "stages": [{"reward": stage}]}
    (scratch / "recipe.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    code = main(["run", str(scratch / "recipe.yaml")])
    if code:
        raise SystemExit(f"rlhf-plug run failed with status {code}")
    out = scratch / "runs" / "hh-rm-bench" / "reward"
    results = json.loads((out / "results.json").read_text())
    result = {k: results.get(k) for k in ("train_seconds", "steps", "truncated_pairs", "dropped_pairs")}
    result["train_pairs_used"] = len(train) - (results.get("dropped_pairs") or 0)
    result["learning_rate"] = stage["args"].get("learning_rate", "stage default")
    if not opts.no_eval:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(out / "model", num_labels=1)
        tokenizer = load_tokenizer(str(out / "model"))
        model.config.pad_token_id = tokenizer.pad_token_id
        result.update(held_out_accuracy(model, tokenizer, held, opts.max_length))
    return result


WORKERS = {"trl": trl_worker, "ours": ours_worker}


def worker_main(opts) -> None:
    import torch

    from rlhf_plug.models import resolve_model

    torch.set_num_threads(2)
    rows = read_pairs(Path(opts.data))
    train, held = rows[: opts.train], rows[opts.train : opts.train + opts.eval]
    start = time.perf_counter()
    result = WORKERS[opts.worker](opts, train, held, resolve_model("smollm2-135m-instruct"))
    result.update(side=opts.worker, seed=opts.seed, wall_seconds=time.perf_counter() - start, peak_rss_gib=peak_rss_gib())
    Path(opts.out).write_text(json.dumps(result), encoding="utf-8")


# --- driver ----------------------------------------------------------------------------


def run_side(side: str, opts, scratch: Path, seed: int) -> dict:
    out = scratch / f"{side}.json"
    cmd = [sys.executable, __file__, "--worker", side, "--seed", str(seed), "--out", str(out), "--scratch", str(scratch),
           *opts.forward]
    print("  $", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO, env={**os.environ, **ENV})
    return json.loads(out.read_text())


def table(results: list[dict]) -> str:
    """One row per run, then each side's mean over runs (accuracy ± its binomial 2σ over the held-out pairs)."""
    keys = ["accuracy", "accuracy_short", "train_pairs_used", "train_seconds", "wall_seconds", "peak_rss_gib"]
    lines = ["| side | seed | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    for r in results:
        lines.append(f"| {r['side']} | {r['seed']} | " + " | ".join(_cell(r.get(k)) for k in keys) + " |")
    for side in ("trl", "ours"):
        runs = [r for r in results if r["side"] == side]
        if not runs:
            continue
        means = [statistics.fmean(v) if (v := [r[k] for r in runs if r.get(k) is not None]) else None for k in keys]
        lines.append(f"| **{side}, mean of {len(runs)}** | | " + " | ".join(_cell(m) for m in means) + " |")
        if means[0] is not None:
            n = sum(r["pairs"] for r in runs)
            lines[-1] += f" ±{2 * (means[0] * (1 - means[0]) / n) ** 0.5:.3f} (2σ)"
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DEV_FILE))
    parser.add_argument("--train", type=int, default=1500)
    parser.add_argument("--eval", type=int, default=312)
    parser.add_argument("--max-length", type=int, default=320)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=None, help="both sides; default: each side's own default")
    parser.add_argument("--seeds", default="0", help="comma-separated; one alternating round per seed")
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=160, help="optimiser steps, both sides")
    parser.add_argument("--no-eval", action="store_true", help="skip held-out scoring (memory runs)")
    parser.add_argument("--set", action="append", default=[], help="ours only: KEY=VALUE in the reward stage section")
    parser.add_argument("--trl-set", action="append", default=[], help="trl only: KEY=VALUE for RewardConfig")
    parser.add_argument("--trl-longest-first", action="store_true", help="trl only: its longest kept pairs first (memory runs)")
    parser.add_argument("--repeats", type=int, default=1, help="alternating rounds (trl, ours, trl, ours, ...)")
    parser.add_argument("--sides", default="trl,ours")
    parser.add_argument("--json", help="write all results here")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    opts = parse()
    if opts.worker:
        return worker_main(opts)
    if not Path(opts.data).is_file():
        raise SystemExit(f"{opts.data}: the HH-RLHF dev file is not there (see its README in ../shared/data/hh-rlhf)")
    opts.forward = [
        "--data", opts.data, "--train", str(opts.train), "--eval", str(opts.eval), "--max-length", str(opts.max_length),
        "--batch", str(opts.batch), *(["--lr", str(opts.lr)] if opts.lr else []), "--steps", str(opts.steps),
        *(["--no-eval"] if opts.no_eval else []), *(f"--set={item}" for item in opts.set),
        *(f"--trl-set={item}" for item in opts.trl_set), *(["--trl-longest-first"] if opts.trl_longest_first else []),
    ]
    results = []
    rounds = [(r, int(seed)) for r in range(opts.repeats) for seed in opts.seeds.split(",")]
    for round_, (repeat, seed) in enumerate(rounds):
        sides = opts.sides.split(",")
        for side in sides if round_ % 2 == 0 else sides[::-1]:  # trl, ours, ours, trl, ...: drift hits both
            with tempfile.TemporaryDirectory(prefix=f"hh-rm-{side}-") as tmp:
                result = run_side(side, opts, Path(tmp), seed)
            result["round"] = repeat
            results.append(result)
            print(json.dumps(result), flush=True)
    print(table(results))
    if opts.json:
        Path(opts.json).write_text(json.dumps({"argv": sys.argv[1:], "results": results}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
