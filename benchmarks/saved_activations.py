"""What one PPO training forward keeps for the backward pass, eager and with lean activations.

    python benchmarks/saved_activations.py --policy runs/sft-rm/sft/model --rows 8 --length 78 --response 32

Counts the bytes of every distinct storage autograd keeps (parameters excluded) through a saved-tensor
hook, for the ``train`` pass of our actor-critic (LoRA r=8 on all linear layers, value head), without a
shared prompt prefix. With lean activations (``ppo.args.lean_activations``) it counts what the lean hook
keeps as tensors, not the recipes it keeps instead.
"""

from __future__ import annotations

import argparse


def saved_mib(model, ids, prompt_length: int, params: set[int]) -> float:
    import torch
    from rlhf_plug_plugins.ppo.speed import lean_activations

    kept: dict[int, int] = {}

    def keep(tensor):
        if isinstance(tensor, torch.Tensor) and tensor.untyped_storage().data_ptr() not in params:
            kept[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    lean_pack = lean_activations._pack
    lean_activations._pack = lambda t: keep(lean_pack(t))
    try:
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            model(role="train", input_ids=ids, attention_mask=torch.ones_like(ids), prompt_length=prompt_length)
    finally:
        lean_activations._pack = lean_pack
    return sum(kept.values()) / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policy", required=True)
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--length", type=int, default=78, help="tokens per row, prompt and response")
    p.add_argument("--response", type=int, default=32)
    args = p.parse_args()

    import torch
    from rlhf_plug_plugins.ppo.actor_critic import build_actor_critic

    model = build_actor_critic(args.policy, "none", {"r": 8, "lora_alpha": 16}, "trunk", 0.7, torch.device("cpu"), False)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    torch.manual_seed(0)
    ids = torch.randint(100, model.causal_lm.config.vocab_size - 100, (args.rows, args.length))
    prompt_length = args.length - args.response
    eager = saved_mib(model, ids, prompt_length, params)
    model.keep_lean_activations()
    lean = saved_mib(model, ids, prompt_length, params)
    config = model.causal_lm.config
    logits = args.rows * args.response * config.vocab_size * 4 / 2**20  # fp32, response positions only

    def per_token_and_layer(mib: float) -> float:
        return (mib - logits) * 1024 / (ids.numel() * config.num_hidden_layers)

    print(f"kept for backward: eager {eager:.1f} MiB, lean {lean:.1f} MiB ({lean / eager:.2f}x); the trunk per token "
          f"and layer (without the {logits:.0f} MiB of logits): eager {per_token_and_layer(eager):.1f} KiB, "
          f"lean {per_token_and_layer(lean):.1f} KiB")


if __name__ == "__main__":
    main()
