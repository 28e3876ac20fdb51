"""Where one PPO rollout's sampling spends its time (short setting: 8 prompts, 32 new tokens, fp32, 2 threads).

    python benchmarks/profile_generation.py --policy runs/sft-rm/sft/model

Times ``generate`` three times, then 32 bare decode forwards with a KV cache (no sampling), then
prints a ``cProfile`` of one ``generate`` sorted by cumulative time.
"""

import argparse
import cProfile
import json
import os
import pstats
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policy", default=str(REPO / "runs" / "sft-rm" / "sft" / "model"))
    p.add_argument("--prompts", default=str(REPO / "plugins" / "data" / "builtin_data" / "prompts.jsonl"))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=32)
    args = p.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(args.policy, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(args.policy).eval()
    rows = [json.loads(line) for line in Path(args.prompts).read_text().splitlines()[: args.batch]]
    texts = [tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows]
    batch = tokenizer(texts, return_tensors="pt", padding=True)

    def generate():
        torch.manual_seed(0)
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(**batch, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=True,
                           temperature=0.7, top_k=0, top_p=1.0, pad_token_id=0)
        return time.perf_counter() - start

    for _ in range(3):
        print(f"generate: {generate():.3f} s")
    with torch.no_grad():
        out = model(**batch, use_cache=True)
        cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        mask = torch.cat([batch["attention_mask"], torch.ones(args.batch, 1, dtype=torch.long)], 1)
        start = time.perf_counter()
        for _ in range(args.new_tokens):
            cache = model(input_ids=token, attention_mask=mask, past_key_values=cache, use_cache=True).past_key_values
            mask = torch.cat([mask, torch.ones(args.batch, 1, dtype=torch.long)], 1)
        print(f"{args.new_tokens} bare decode forwards: {time.perf_counter() - start:.3f} s")
    profile = cProfile.Profile()
    profile.enable()
    generate()
    profile.disable()
    pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
