"""Sample K completions per prompt with ``transformers`` ``generate``.

Prompts are shaped as in the data: a list of messages goes through the chat
template (with the generation prompt), plain text is tokenised as it is, the
same as the PPO stage does. Completions come back in the same shape
(``[{"role": "assistant", "content": ...}]`` for messages, text for text).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Samples:
    completions: list[Any]
    completion_ids: list[list[int]]  # generated token ids up to and including EOS
    finished: list[bool]  # ended with EOS (False: cut off at max_new_tokens)


def _stage_model(name: str) -> Path | None:
    """``runs/<recipe>/<stage>`` given instead of ``.../<stage>/model``: its merged model."""
    from rlhf_plug.run_folder import MODEL_DIR

    path = Path(name).expanduser() / MODEL_DIR
    return path if (path / "config.json").is_file() else None


def check_model(name: str) -> None:
    """Fail early, without loading anything, if ``name`` cannot resolve to a model."""
    from rlhf_plug.models import check_model_name

    if _stage_model(name) is None:
        check_model_name(name)


def model_location(name: str, console=None) -> str:
    """A model alias, a local model directory, or a stage output folder (its ``model/`` is used)."""
    from rlhf_plug.models import resolve_model

    stage_model = _stage_model(name)
    return str(stage_model) if stage_model is not None else resolve_model(name, console)


class Sampler:
    """A causal LM and its tokenizer (pad token distinct from EOS), ready to sample."""

    def __init__(self, path: str, *, max_new_tokens: int, temperature: float, seed: int):
        import torch
        from transformers import AutoModelForCausalLM

        from rlhf_plug.models import load_tokenizer

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.tokenizer = load_tokenizer(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self.max_new_tokens, self.temperature, self.seed = max_new_tokens, temperature, seed
        self.stop = threading.Event()  # set by another thread: generate() returns after the current token

    def prompt_ids(self, prompt: Any) -> list[int]:
        if isinstance(prompt, list):
            encoded = self.tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)
            return list(encoded["input_ids"])
        return list(self.tokenizer(text=prompt)["input_ids"])

    def sample(self, prompt: Any, k: int, index: int) -> Samples:
        """``k`` completions of ``prompt``; seeded by ``seed + index`` so a resumed session samples the same."""
        import torch
        from transformers import GenerationConfig, StoppingCriteriaList

        tok = self.tokenizer
        # Never sample padding or other special tokens: only EOS may end a completion.
        suppress = [i for i in tok.all_special_ids if i != tok.eos_token_id]
        config = GenerationConfig(
            do_sample=True, temperature=self.temperature, max_new_tokens=self.max_new_tokens, min_new_tokens=1,
            num_return_sequences=k, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
            suppress_tokens=suppress or None,
        )
        ids = torch.tensor([self.prompt_ids(prompt)], device=self.device)
        torch.manual_seed(self.seed + index)
        with torch.no_grad():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config,
                                      stopping_criteria=StoppingCriteriaList([_stop_when(self.stop)]))
        generated = [self._until_eos(row) for row in out[:, ids.shape[1] :].tolist()]
        texts = [tok.decode(row, skip_special_tokens=True).strip() for row in generated]
        shaped = [[{"role": "assistant", "content": t}] if isinstance(prompt, list) else t for t in texts]
        finished = [bool(row) and row[-1] == tok.eos_token_id for row in generated]
        return Samples(shaped, generated, finished)

    def _until_eos(self, row: list[int]) -> list[int]:
        eos = self.tokenizer.eos_token_id
        return row[: row.index(eos) + 1] if eos in row else row


def _stop_when(event: threading.Event):
    """A ``transformers`` stopping criterion that ends generation once ``event`` is set (a server shutting down)."""
    import torch
    from transformers import StoppingCriteria

    class StopWhenSet(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool, device=input_ids.device)

    return StopWhenSet()
