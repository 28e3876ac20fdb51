"""``learned_rm``: the reward model from a ``reward`` stage, as a reward function.

In a PPO stage whose base is the model the RM was trained on (the usual
SFT → reward → ppo chain), the RM's LoRA adapter and score head are loaded
onto the PPO base itself, so no second model is held in memory. Otherwise
(another base, another architecture, or ``share_base: false``) the merged RM
is loaded as its own ``AutoModelForSequenceClassification``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field

from rlhf_plug import hookimpl
from rlhf_plug.stage import ADAPTER_DIR, MODEL_DIR


class LearnedRM:
    """Score completions with a trained reward model (text formatted as the reward trainer did)."""

    def __init__(self, model: str | None = None, batch_size: Annotated[int, Field(gt=0)] = 16, share_base: bool = True):
        self.model = model
        self.batch_size = batch_size
        self.share_base = share_base
        self.__name__ = "learned_rm"
        self._score_ids = None
        self._tokenizer = None
        self._max_length = None  # the reward stage's max_length: inputs are cut as in training
        self.shared = False

    # --- setup ----------------------------------------------------------
    def setup(self, context) -> None:
        from rlhf_plug_plugins.stages.reward_data import read_max_length

        source = self._source_dir(context)
        self._max_length = read_max_length(source)
        adapter = source / ADAPTER_DIR
        shared_base = getattr(context, "actor_critic", None)  # None in stages that hold no shared base (grpo, rloo)
        if self.share_base and shared_base is not None and _trained_on(adapter, context.base_path):
            name = context.actor_critic.add_reward_adapter(adapter)
            self._tokenizer = context.tokenizer
            self._score_ids = _shared_scorer(context.actor_critic, name, context.tokenizer, context.device)
            self.shared = True
        else:
            self._load_separate(source / MODEL_DIR if (source / MODEL_DIR).is_dir() else source, context.device)

    def _source_dir(self, context) -> Path:
        stage = context.stage
        if self.model is None:
            found = stage.latest_stage_dir(("reward",))
            if found is None:
                raise stage.error((*context.key, "with", "model"), "no earlier reward stage; name one, or a reward model directory")
            return found
        earlier = stage.earlier_stage_dir(self.model)
        if earlier is not None:
            return earlier
        path = Path(self.model).expanduser()
        if not path.is_dir():
            raise stage.error((*context.key, "with", "model"), f"'{self.model}' is neither an earlier stage nor a directory")
        return path

    def _load_separate(self, path: Path, device=None) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification

        from rlhf_plug.models import load_tokenizer
        from rlhf_plug.rm_scoring import score

        model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1)
        model.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval()
        model.requires_grad_(False)
        self._tokenizer = load_tokenizer(str(path))
        model.config.pad_token_id = self._tokenizer.pad_token_id
        self._score_texts = lambda prompts, completions: score(
            model, self._tokenizer, prompts, completions, self.batch_size, self._max_length
        )

    # --- scoring --------------------------------------------------------
    def __call__(self, prompts, completions, **columns) -> list[float]:
        from rlhf_plug.rm_scoring import reward_input_ids

        if self._score_ids is None and self._tokenizer is None:
            if self.model is None:
                raise RuntimeError("learned_rm needs `with: {model: <reward stage or directory>}` outside a PPO stage")
            from rlhf_plug_plugins.stages.reward_data import read_max_length

            self._max_length = read_max_length(Path(self.model))
            self._load_separate(Path(self.model))
        if self._score_ids is None:
            return self._score_texts(list(prompts), list(completions))
        ids = [reward_input_ids(self._tokenizer, p, c, self._max_length) for p, c in zip(prompts, completions)]
        return [s for start in range(0, len(ids), self.batch_size) for s in self._score_ids(ids[start : start + self.batch_size])]


def _trained_on(adapter: Path, base_path: str) -> bool:
    import json

    config = adapter / "adapter_config.json"
    if not config.is_file():
        return False
    trained_base = Path(json.loads(config.read_text()).get("base_model_name_or_path") or "").expanduser()
    base = Path(base_path).expanduser()
    if trained_base.resolve() == base.resolve():
        return True
    return trained_base.is_dir() and base.is_dir() and _same_weights(trained_base, base)


def _same_weights(a: Path, b: Path) -> bool:
    """Same safetensors files byte for byte (e.g. a run folder that was copied or renamed)."""
    import hashlib

    files_a, files_b = sorted(a.glob("*.safetensors")), sorted(b.glob("*.safetensors"))
    if not files_a or [f.name for f in files_a] != [f.name for f in files_b]:
        return False
    if any(x.stat().st_size != y.stat().st_size for x, y in zip(files_a, files_b)):
        return False

    def digest(path: Path) -> str:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 24), b""):
                h.update(block)
        return h.hexdigest()

    return all(digest(x) == digest(y) for x, y in zip(files_a, files_b))


def _shared_scorer(actor_critic, name: str, tokenizer, device):
    import torch

    from rlhf_plug.policy.sampling import right_pad

    @torch.no_grad()
    def score_ids(ids: list[list[int]]) -> list[float]:
        input_ids, mask = right_pad(ids, tokenizer.pad_token_id)
        return actor_critic(role="reward", name=name, input_ids=input_ids.to(device), attention_mask=mask.to(device)).tolist()

    return score_ids


@hookimpl
def rlhf_register_reward_functions(register):
    register("learned_rm", LearnedRM)
