"""Our PPO engine against TRL 1.12's PPOTrainer (the last TRL PPO), side by side on one machine.

    python benchmarks/ppo_vs_trl112.py                 # fp32 and bf16, 10 updates each
    python benchmarks/ppo_vs_trl112.py --dtypes fp32 --updates 6

Matched settings: SmolLM2-135M-Instruct (the SFT model of `rlhf-plug run sft-rm`),
its reward model, 8 prompts per update in file order, 32-token responses at
temperature 0.7, 1 PPO epoch on 1 minibatch, LoRA r=8 on all linear layers,
fixed KL coefficient 0.05, no reward normalisation, learning rate 1e-4, seed 0,
2 threads. Each run is a fresh process; TRL runs in its own virtualenv
(benchmarks/setup_trl112.sh). Reports median and minimum seconds per update
(first update dropped), peak RSS and the RM-score gain per update.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TRL_PYTHON = HERE / ".venv-trl112" / "bin" / "python"
ENV = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "TRL_EXPERIMENTAL_SILENCE": "1", "OMP_NUM_THREADS": "2"}


def ensure_models(run_dir: Path) -> None:
    if not (run_dir / "sft" / "model").is_dir() or not (run_dir / "reward" / "adapter").is_dir():
        print(f"{run_dir} missing: running `rlhf-plug run sft-rm` first (about 6 minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "rlhf_plug.cli", "run", "sft-rm"], check=True, cwd=REPO)


def write_prompts(folder: Path, policy: Path, count: int) -> tuple[Path, Path]:
    """The first ``count`` built-in prompts: as messages (ours) and as chat-templated ids (TRL)."""
    from transformers import AutoTokenizer

    source = REPO / "plugins" / "builtin_data" / "prompts.jsonl"
    rows = [json.loads(line) for line in source.read_text().splitlines()[:count]]
    tokenizer = AutoTokenizer.from_pretrained(policy)
    messages, ids = folder / "prompts.jsonl", folder / "prompt_ids.jsonl"
    messages.write_text("".join(json.dumps(r) + "\n" for r in rows))
    encoded = [tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"] for r in rows]
    ids.write_text("".join(json.dumps({"input_ids": list(x)}) + "\n" for x in encoded))
    return messages, ids


def run_worker(cmd: list[str], out: Path) -> dict:
    import os

    print("  $", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=REPO, env={**os.environ, **ENV})
    return json.loads(out.read_text())


def summarise(result: dict) -> dict:
    times = result["seconds_per_update"][1:]
    scores = result["scores"]
    n = len(scores)
    mean_x = (n - 1) / 2
    slope = sum((i - mean_x) * (s - statistics.fmean(scores)) for i, s in enumerate(scores)) / sum((i - mean_x) ** 2 for i in range(n))
    return {
        "impl": result["impl"],
        "median_s": statistics.median(times),
        "min_s": min(times),
        "generation_median_s": statistics.median(result["generation_seconds_per_update"][1:]),
        "peak_rss_gib": result["peak_rss_gib"],
        "reward_gain_per_update": slope,
        "reward_first": scores[0],
        "reward_last": scores[-1],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", type=Path, default=REPO / "runs" / "sft-rm")
    p.add_argument("--updates", type=int, default=10)
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--json", type=Path, default=HERE / "ppo_vs_trl112.json")
    args = p.parse_args()

    ensure_models(args.run_dir)
    if not TRL_PYTHON.exists():
        subprocess.run(["bash", str(HERE / "setup_trl112.sh")], check=True)
    policy, reward = (args.run_dir / "sft" / "model").resolve(), (args.run_dir / "reward").resolve()
    common = ["--updates", args.updates, "--seed", 0, "--threads", 2, "--learning-rate", args.learning_rate]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        messages, ids = write_prompts(Path(tmp), policy, 8 * args.updates)
        for dtype in args.dtypes:
            out = Path(tmp) / f"trl-{dtype}.json"
            trl = run_worker([TRL_PYTHON, HERE / "trl112_worker.py", "--policy", policy, "--reward-model", reward / "model",
                              "--prompts", ids, "--dtype", dtype, "--out", out, *common], out)
            rows.append({"dtype": dtype, **summarise(trl)})
            for value_model in (("trunk", "adapter") if dtype == "fp32" else ("trunk",)):
                out = Path(tmp) / f"ours-{dtype}-{value_model}.json"
                ours = run_worker([sys.executable, HERE / "ours_worker.py", "--policy", policy, "--reward", reward,
                                   "--prompts", messages, "--dtype", dtype, "--value-model", value_model, "--out", out, *common], out)
                rows.append({"dtype": dtype, **summarise(ours)})
    args.json.write_text(json.dumps(rows, indent=2))
    print(table(rows))


def table(rows: list[dict]) -> str:
    lines = [
        "| dtype | implementation | median s/update | min s/update | generation s (median) | peak RSS GiB | RM reward gain / update | time vs TRL | RSS vs TRL |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        trl = next(r for r in rows if r["dtype"] == row["dtype"] and r["impl"].startswith("trl"))
        lines.append(
            f"| {row['dtype']} | {row['impl']} | {row['median_s']:.2f} | {row['min_s']:.2f} | {row['generation_median_s']:.2f} "
            f"| {row['peak_rss_gib']:.2f} | {row['reward_gain_per_update']:+.3f} | {row['median_s'] / trl['median_s']:.2f}x "
            f"| {row['peak_rss_gib'] / trl['peak_rss_gib']:.2f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
