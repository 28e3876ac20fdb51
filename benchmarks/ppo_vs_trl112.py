"""Our PPO engine against TRL 1.12's PPOTrainer (the last TRL PPO), side by side on one machine.

    python benchmarks/ppo_vs_trl112.py --dtypes fp32 --updates 10                 # short setting, checkpointing auto and on
    python benchmarks/ppo_vs_trl112.py --settings long --checkpointing auto --updates 4

Matched settings: SmolLM2-135M-Instruct (the SFT model of `rlhf-plug run sft-rm`),
its reward model, 8 prompts per update in file order, 32-token responses at
temperature 0.7, 1 PPO epoch on 1 minibatch, LoRA r=8 on all linear layers,
fixed KL coefficient 0.05, no reward normalisation, learning rate 1e-4, seed 0,
2 threads. Each run is a fresh process; TRL runs in its own virtualenv
(benchmarks/setup_trl112.sh). Reports median and minimum seconds per update
(first update of each run dropped), the median per phase (generation, reference, reward,
value, update), peak RSS and the RM-score gain per update. The sides alternate (TRL, ours,
TRL, ours, ...) so that drift on the machine hits both.
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
        subprocess.run([sys.executable, "-m", "rlhf_plug", "run", "sft-rm"], check=True, cwd=REPO)


def write_prompts(folder: Path, policy: Path, count: int, prompt_tokens: int | None = None) -> tuple[Path, Path]:
    """``count`` built-in prompts in file order: as messages (ours) and as chat-templated ids (TRL).

    With ``prompt_tokens`` each user message is built from consecutive built-in prompts, cut word by
    word so that the chat-templated prompt is at most that many tokens (the long setting).
    """
    from transformers import AutoTokenizer

    source = REPO / "plugins" / "data" / "builtin_data" / "prompts.jsonl"
    lines = source.read_text().splitlines()
    tokenizer = AutoTokenizer.from_pretrained(policy)

    def encode(row):
        return tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]

    rows = [json.loads(line) for line in lines[:count]]
    if prompt_tokens is not None:
        rows = [_long_prompt(lines, i, prompt_tokens, encode) for i in range(count)]
    messages, ids = folder / "prompts.jsonl", folder / "prompt_ids.jsonl"
    messages.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ids.write_text("".join(json.dumps({"input_ids": list(encode(r))}) + "\n" for r in rows))
    return messages, ids


def _long_prompt(lines: list[str], start: int, tokens: int, encode) -> dict:
    words: list[str] = []
    i = start
    while len(encode(_user(words))) < tokens:
        words += json.loads(lines[i % len(lines)])["prompt"][-1]["content"].split()
        i += 1
    while len(encode(_user(words))) > tokens:
        words.pop()
    return _user(words)


def _user(words: list[str]) -> dict:
    return {"prompt": [{"role": "user", "content": " ".join(words)}]}


def run_worker(cmd: list[str], out: Path) -> dict:
    import os

    print("  $", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=REPO, env={**os.environ, **ENV})
    return json.loads(out.read_text())


PHASES = ("generation", "reference", "reward", "value", "update")


def summarise(results: list[dict]) -> dict:
    """Median and minimum over every run's updates but its first (warm-up); phases by median."""
    times = [t for r in results for t in r["seconds_per_update"][1:]]
    row = {"impl": results[0]["impl"], "runs": len(results), "updates_timed": len(times),
           "median_s": statistics.median(times), "min_s": min(times),
           "peak_rss_gib": max(r["peak_rss_gib"] for r in results),
           "reward_gain_per_update": statistics.fmean(_slope(r["scores"]) for r in results),
           "reward_first": results[0]["scores"][0], "reward_last": results[0]["scores"][-1]}
    for phase in PHASES:
        values = [t for r in results for t in r.get("phase_seconds_per_update", {}).get(phase, [])[1:]]
        if phase == "update" and not values:  # TRL: what the timed rollout phases leave of the update
            values = [total - sum(r["phase_seconds_per_update"][p][i] for p in PHASES[:-1])
                      for r in results for i, total in enumerate(r["seconds_per_update"]) if i > 0]
        row[f"{phase}_s"] = statistics.median(values) if values else None
    return row


def _slope(scores: list[float]) -> float:
    n = len(scores)
    mean_x, mean_y = (n - 1) / 2, statistics.fmean(scores)
    return sum((i - mean_x) * (s - mean_y) for i, s in enumerate(scores)) / sum((i - mean_x) ** 2 for i in range(n))


SETTINGS = {"short": {"response": 32, "prompt_tokens": None}, "long": {"response": 64, "prompt_tokens": 256}}
TRL_CHECKPOINTING = {"auto": "false", "off": "false", "on": "true"}
OURS_CHECKPOINTING = {"auto": "auto", "off": "false", "on": "true"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", type=Path, default=REPO / "runs" / "sft-rm")
    p.add_argument("--updates", type=int, default=10)
    p.add_argument("--dtypes", nargs="+", default=["fp32"])
    p.add_argument("--settings", nargs="+", choices=tuple(SETTINGS), default=["short"],
                   help="short: built-in prompts (~46 tokens), 32 new tokens; long: 256-token prompts, 64 new tokens")
    p.add_argument("--checkpointing", nargs="+", choices=tuple(OURS_CHECKPOINTING), default=["auto", "on"],
                   help="ours: gradient_checkpointing auto/false/true; TRL: false for auto and off, true for on")
    p.add_argument("--rounds", type=int, default=1, help="alternating TRL/ours rounds per setting")
    p.add_argument("--value-models", nargs="+", default=["trunk"], choices=("trunk", "adapter"))
    p.add_argument("--ours-variant", action="append", default=[], metavar="LABEL=OVERRIDE[;OVERRIDE]",
                   help="also run ours with these recipe overrides, at the first --checkpointing value only "
                        "(e.g. unmerged=ppo.args.merged_sampling=false)")
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--json", type=Path, default=HERE / "ppo_vs_trl112.json")
    args = p.parse_args()

    ensure_models(args.run_dir)
    if not TRL_PYTHON.exists():
        subprocess.run(["bash", str(HERE / "setup_trl112.sh")], check=True)
    policy, reward = (args.run_dir / "sft" / "model").resolve(), (args.run_dir / "reward").resolve()
    common = ["--updates", args.updates, "--seed", 0, "--threads", 2, "--learning-rate", args.learning_rate]
    variants = [("", [])] + [(v.split("=", 1)[0], v.split("=", 1)[1].split(";")) for v in args.ours_variant]
    runs: dict[tuple, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for setting in args.settings:
            spec = SETTINGS[setting]
            folder = Path(tmp) / setting
            folder.mkdir()
            messages, ids = write_prompts(folder, policy, 8 * args.updates, spec["prompt_tokens"])
            length = ["--response-length", spec["response"]]
            for round_ in range(args.rounds):
                for dtype in args.dtypes:
                    for ck in args.checkpointing:
                        out = folder / f"trl-{dtype}-{ck}-{round_}.json"
                        cmd = [TRL_PYTHON, HERE / "trl112_worker.py", "--policy", policy, "--reward-model", reward / "model",
                               "--prompts", ids, "--dtype", dtype, "--gradient-checkpointing", TRL_CHECKPOINTING[ck],
                               "--out", out, *length, *common]
                        runs.setdefault((setting, dtype, ck, "trl", ""), []).append(run_worker(cmd, out))
                        for value_model in args.value_models:
                            for label, overrides in variants if ck == args.checkpointing[0] else variants[:1]:
                                out = folder / f"ours-{dtype}-{ck}-{value_model}-{label}-{round_}.json"
                                cmd = [sys.executable, HERE / "ours_worker.py", "--policy", policy, "--reward", reward,
                                       "--prompts", messages, "--dtype", dtype, "--value-model", value_model, "--out", out,
                                       "--gradient-checkpointing", OURS_CHECKPOINTING[ck], *length, *common]
                                cmd += [x for o in overrides for x in ("--set", o)]
                                result = run_worker(cmd, out)
                                if label:
                                    result["impl"] += f" [{label}]"
                                runs.setdefault((setting, dtype, ck, value_model, label), []).append(result)
                                report(runs, args.json)  # after every pair: a run cut short keeps what it measured


def report(runs: dict[tuple, list[dict]], path: Path) -> None:
    rows = [{"setting": k[0], "dtype": k[1], "checkpointing": k[2], **summarise(v)} for k, v in runs.items()]
    path.write_text(json.dumps({"rows": rows, "runs": {"/".join(k): v for k, v in runs.items()}}, indent=2))
    print(table(rows), phase_table(rows), sep="\n\n", flush=True)


def _trl_row(rows: list[dict], row: dict) -> dict:
    return next(r for r in rows if r["impl"].startswith("trl") and all(r[k] == row[k] for k in ("setting", "dtype", "checkpointing")))


def table(rows: list[dict]) -> str:
    lines = [
        "| setting | checkpointing | implementation | median s/update | min s/update | peak RSS GiB | RM reward gain / update | time vs TRL | RSS vs TRL |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        trl = _trl_row(rows, row)
        lines.append(
            f"| {row['setting']} {row['dtype']} | {row['checkpointing']} | {row['impl']} | {row['median_s']:.2f} | {row['min_s']:.2f} "
            f"| {row['peak_rss_gib']:.2f} | {row['reward_gain_per_update']:+.3f} | {row['median_s'] / trl['median_s']:.2f}x "
            f"| {row['peak_rss_gib'] / trl['peak_rss_gib']:.2f}x |"
        )
    return "\n".join(lines)


def phase_table(rows: list[dict]) -> str:
    """Median seconds per phase: generation, reference pass, reward model, value model (TRL), the update."""
    lines = ["| setting | checkpointing | implementation | " + " | ".join(PHASES) + " |", "|---|---|---|" + "---|" * len(PHASES)]
    for row in rows:
        cells = " | ".join("-" if row[f"{p}_s"] is None else f"{row[f'{p}_s']:.2f}" for p in PHASES)
        lines.append(f"| {row['setting']} {row['dtype']} | {row['checkpointing']} | {row['impl']} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
