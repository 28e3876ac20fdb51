"""One base model, four roles: policy, reference, value and reward.

The base is the merged SFT model. The policy is the LoRA adapter ``default``;
the reference is the same weights with adapters off; the value function is a
zero-initialised scalar head on the policy's hidden states (``trunk``) or on
its own ``value`` adapter (``adapter``); a reward model trained as LoRA on the
same base is loaded as another adapter plus its score head.

Every pass goes through :meth:`ActorCritic.forward` with a ``role`` so that
accelerate's DDP wrapper sees it.
"""

from __future__ import annotations

import json
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from rlhf_plug_plugins.ppo.speed.activation_checkpointing import (
    Checkpointing, checkpointed_layers, disable_checkpointing, enable_checkpointing, is_checkpointing, recomputed_within,
)
from rlhf_plug_plugins.ppo.dropout import disable_dropout
from rlhf_plug_plugins.ppo.speed.heap import release_freed_memory
from rlhf_plug_plugins.ppo.speed.lean_activations import recompute_cheap_activations, use_lean_activations
from rlhf_plug_plugins.ppo.speed.prefix import hidden_with_shared_prefix, shared_prefix
from rlhf_plug_plugins.ppo.scoring import ResponseScorer

POLICY = "default"  # peft's default adapter name: save_pretrained then writes the adapter at the top level
VALUE = "value"


@dataclass
class TrainOutput:
    logprobs: torch.Tensor  # [B, R] log π(response token), logits divided by the temperature
    entropy: torch.Tensor  # [B, R] entropy of the tempered distribution (no grad)
    values: torch.Tensor | None  # [B, R] V(state before each response token)
    lm_loss: torch.Tensor | None  # PPO-ptx LM loss on the pretraining batch


class ActorCritic(nn.Module):
    def __init__(self, peft_model, value_mode: str, temperature: float, top_k: int = 0, top_p: float = 1.0):
        super().__init__()
        self.peft = peft_model
        self.value_mode = value_mode
        self.temperature = temperature
        self.scorer = ResponseScorer(peft_model.get_base_model().config, temperature, top_k, top_p)
        hidden = self.causal_lm.config.hidden_size
        self.value_head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.reward_heads = nn.ModuleDict()
        self.trainable_adapters = {POLICY} | ({VALUE} if value_mode == "adapter" else set())
        self.checkpointing = None  # a Checkpointing, set by build_actor_critic
        self.share_prefix = False  # run a prompt prefix all rows share once (rlhf_plug_plugins.ppo.speed.prefix)
        self.release_memory = False  # hand freed heap pages back to the OS mid-forward (rlhf_plug_plugins.ppo.speed.heap)
        self.lean_activations = False  # see keep_lean_activations
        self.notice = lambda text: None  # says once that a speed feature steps aside (set by the stage)
        self._index_lora_params()
        self.fix_trainable()

    # --- structure ------------------------------------------------------
    @property
    def causal_lm(self):
        return self.peft.get_base_model()

    @property
    def trunk(self):
        """The decoder without its LM head (``model.model`` for Llama)."""
        lm = self.causal_lm
        return getattr(lm, lm.base_model_prefix)

    # transformers-style switches, for TRL's unwrap_model_for_generation
    @property
    def is_gradient_checkpointing(self) -> bool:
        return is_checkpointing(self.causal_lm)

    def gradient_checkpointing_disable(self) -> None:
        disable_checkpointing(self.causal_lm)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None) -> None:
        enable_checkpointing(self.causal_lm, 1)  # the next training forward chooses again (Checkpointing)

    def _index_lora_params(self) -> None:
        """(param, trainable) for every LoRA weight; rebuilt when an adapter is added."""
        self._lora_params = [
            (param, any(f".{a}." in name for a in self.trainable_adapters))
            for name, param in self.peft.named_parameters()
            if "lora_" in name
        ]

    def policy_is_identity(self) -> bool:
        """True while the policy adapter changes nothing (every LoRA B of ``default`` is zero, as peft
        initialises it): the policy then samples exactly what the reference samples."""
        return all(
            not param.any()
            for name, param in self.peft.named_parameters()
            if f".{POLICY}." in name and ("lora_B" in name or "lora_embedding_B" in name)
        )

    def keep_lean_activations(self) -> dict[str, int]:
        """Training forwards keep no norm output and two SwiGLU intermediates, not four: the backward pass
        recomputes the rest (:mod:`rlhf_plug_plugins.ppo.speed.lean_activations`); checkpointing budgets for that.
        Returns how many MLPs and norms were made lean."""
        patched = use_lean_activations(self.causal_lm)
        self.lean_activations = True
        if self.checkpointing is not None:
            self.checkpointing.lean = True
        return patched

    def fix_trainable(self) -> None:
        """peft's ``set_adapter`` flips ``requires_grad``; keep exactly our trainable adapters trainable."""
        for param, trainable in self._lora_params:
            param.requires_grad = trainable

    @contextmanager
    def adapter(self, name: str | None):
        """Run with adapter ``name`` active, or with adapters off (``None``: the reference)."""
        if name is None:
            with self.peft.disable_adapter():
                yield
            return
        previous = self.peft.active_adapter
        if name == previous:
            yield
            return
        self.peft.set_adapter(name)
        try:
            yield
        finally:
            self.peft.set_adapter(previous)
            self.fix_trainable()

    def add_reward_adapter(self, adapter_dir: Path) -> str:
        """Load a sequence-classification LoRA (trained on this base) as a reward adapter."""
        from peft import LoraConfig, set_peft_model_state_dict
        from safetensors.torch import load_file

        name = f"reward_{len(self.reward_heads)}"
        options = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
        keep = {"r", "lora_alpha", "target_modules", "lora_dropout", "bias", "use_rslora", "use_dora", "fan_in_fan_out",
                "layers_to_transform", "layers_pattern", "rank_pattern", "alpha_pattern", "exclude_modules"}
        config = LoraConfig(**{k: v for k, v in options.items() if k in keep}, inference_mode=True)
        self.peft.add_adapter(name, config)
        disable_dropout(self.peft)  # the reward adapter's own lora_dropout: a reward scores deterministically
        weights = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
        head = {k: v for k, v in weights.items() if ".score." in k or k.endswith(("score.weight", "score.bias"))}
        lora = {k: v for k, v in weights.items() if k not in head}
        result = set_peft_model_state_dict(self.peft, lora, adapter_name=name)
        missing = [k for k in result.missing_keys if f".{name}." in k]
        if missing or not head:
            raise ValueError(f"{adapter_dir} does not look like a reward-model LoRA for this base ({len(missing)} missing keys)")
        weight = next(v for k, v in head.items() if k.endswith("weight"))
        score = nn.Linear(weight.shape[1], weight.shape[0], bias=any(k.endswith("bias") for k in head))
        score.load_state_dict({k.rsplit(".", 1)[-1]: v for k, v in head.items()})
        score.requires_grad_(False)
        param = next(self.value_head.parameters())
        self.reward_heads[name] = score.to(device=param.device)
        self._index_lora_params()
        self.fix_trainable()
        return name

    # --- passes ---------------------------------------------------------
    def forward(self, role: str, **kwargs):
        return {"train": self._train, "reference": self._reference, "reward": self._reward}[role](**kwargs)

    def _hidden(self, input_ids, attention_mask, start: int | None = None, prefix: tuple | None = None):
        """``prefix``: this batch's ``shared_prefix(...)`` when the caller already has it."""
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        first, length = (prefix or shared_prefix(input_ids, attention_mask)) if self.share_prefix else (None, 0)
        hidden = None
        if length:
            hidden = hidden_with_shared_prefix(self.trunk, input_ids, attention_mask, position_ids, first, length)
            if hidden is None:
                self.notice(
                    "share_prompt_prefix steps aside while layers are checkpointed: this model's cache (sliding-window "
                    "or quantized layers) cannot be frozen, so those batches run whole"
                )
        if hidden is None:
            out = self.trunk(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
            hidden = out.last_hidden_state
        return hidden if start is None else hidden[:, start - 1 : -1]

    def _response_logprobs(self, hidden, response_ids, truncate: bool = True):
        """Logits only for response positions (the LM head is the costliest matmul per token), scored as sampled
        (:mod:`rlhf_plug_plugins.ppo.scoring`); ``truncate=False``: no top-k/top-p (the reference's full support)."""
        return self.scorer(self.causal_lm.get_output_embeddings(), hidden, response_ids, truncate)

    def _values(self, hidden):
        return self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1).float()

    def _train(self, input_ids, attention_mask, prompt_length: int, with_values: bool = True, ptx=None) -> TrainOutput:
        lean = self.lean_activations and torch.is_grad_enabled()
        with recompute_cheap_activations() if lean else nullcontext():
            return self._train_pass(input_ids, attention_mask, prompt_length, with_values, ptx)

    def _train_pass(self, input_ids, attention_mask, prompt_length: int, with_values: bool, ptx) -> TrainOutput:
        response_ids = input_ids[:, prompt_length:]
        prefix = shared_prefix(input_ids, attention_mask) if self.share_prefix else None
        if self.checkpointing is not None and torch.is_grad_enabled():
            length = prefix[1] if prefix else 0
            self.checkpointing.before_forward(input_ids.shape[0] * (input_ids.shape[1] - length) + length)
        hidden = self._hidden(input_ids, attention_mask, prompt_length, prefix)
        if self.release_memory and torch.is_grad_enabled():  # the trunk's freed temporaries, before the head's logits
            release_freed_memory()
        logprobs, entropy = self._response_logprobs(hidden, response_ids)
        values = None
        if with_values:
            if self.value_mode == "adapter":
                value_adapter = partial(self.adapter, VALUE)  # checkpointed layers must recompute under it too
                with value_adapter(), recomputed_within(checkpointed_layers(self.trunk), value_adapter):
                    hidden = self._hidden(input_ids, attention_mask, prompt_length, prefix)
            values = self._values(hidden)
        lm_loss = self._lm_loss(**ptx) if ptx is not None else None
        return TrainOutput(logprobs, entropy.detach(), values, lm_loss)

    def _lm_loss(self, input_ids, attention_mask):
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        return self.causal_lm(input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False).loss

    def _reference(self, input_ids, attention_mask, prompt_length: int):
        with self.adapter(None):
            hidden = self._hidden(input_ids, attention_mask, prompt_length)
            return self._response_logprobs(hidden, input_ids[:, prompt_length:], truncate=False)[0]

    def _reward(self, name: str, input_ids, attention_mask):
        """Scores at the last real token of right-padded sequences."""
        with self.adapter(name):
            hidden = self._hidden(input_ids, attention_mask)
        last = attention_mask.long().sum(-1) - 1
        picked = hidden[torch.arange(len(last), device=hidden.device), last]
        head = self.reward_heads[name]
        return head(picked.to(head.weight.dtype)).squeeze(-1).float()

    # --- saving ---------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu().contiguous() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        expected = {n for n, p in self.named_parameters() if p.requires_grad}
        if set(state) != expected:
            raise ValueError(f"checkpoint holds {len(state)} trainable tensors, the model has {len(expected)}")
        params = dict(self.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)


def build_actor_critic(
    base_path: str, quantization: str, lora_options, value_mode: str, temperature: float, device,
    gradient_checkpointing: bool | str = False, activation_budget_gib: float = 0.5, top_k: int = 0, top_p: float = 1.0,
):
    """Load the base once and wrap it: policy adapter (+ value adapter), value head; dropout off.

    With ``gradient_checkpointing`` the trunk keeps only each layer's input for
    the backward pass (recomputing the rest): activation memory falls from
    about 1.3 MB to 0.1 MB per token for SmolLM2-135M, for about one extra
    forward pass per update. ``"auto"`` decides per batch from ``activation_budget_gib``
    (:mod:`rlhf_plug_plugins.ppo.speed.activation_checkpointing`).
    """
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from rlhf_plug.models import lora_config, model_init_kwargs, quantization_config

    kwargs = model_init_kwargs(quantization)
    base = AutoModelForCausalLM.from_pretrained(base_path, quantization_config=quantization_config(quantization), **kwargs)
    if "device_map" not in kwargs:
        base.to(device)
    config = lora_config(lora_options if lora_options is not False else True, "CAUSAL_LM")
    peft_model = get_peft_model(base, config, adapter_name=POLICY)
    if value_mode == "adapter":
        peft_model.add_adapter(VALUE, config)
    disable_dropout(peft_model)
    model = ActorCritic(peft_model, value_mode, temperature, top_k, top_p)
    model.checkpointing = Checkpointing(base, gradient_checkpointing, activation_budget_gib)
    model.train(model.checkpointing.may_checkpoint)  # checkpointing acts in train mode only; dropout is off either way
    model.value_head.to(device)
    return model
