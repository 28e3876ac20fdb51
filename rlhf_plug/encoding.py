"""How a (prompt, answer) pair becomes tokens: one function for every stage that trains or scores.

The reward stage trains on it, ``learned_rm`` and ``rm_accuracy`` score with it, and the
``sft`` stage uses it for prompt/completion text, so a long transcript is cut the same way
everywhere. Long conversations are cut **from the left of the prompt**: the answer (the part
that differs between chosen and rejected, or that SFT learns) is kept whole, and only an
answer that alone exceeds ``max_length`` does not fit.

The text is what TRL (1.16) builds: plain text is ``prompt + answer`` with EOS appended,
tokenized in one piece; conversational data goes through the chat template. The answer
starts where the tokenized prompt and the tokenized whole diverge, as in TRL's SFTTrainer.
Only the tokenizer is used here (no torch import).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Encoded:
    """Token ids of one (prompt, answer), after truncation."""

    input_ids: list[int]
    answer_length: int  # tokens of the answer (EOS or closing template tokens included)
    prompt_cut: int = 0  # prompt tokens removed from the left to fit ``max_length``
    fits: bool = True  # False: the answer alone is longer than ``max_length`` (its end was kept)

    @property
    def prompt_length(self) -> int:
        return len(self.input_ids) - self.answer_length


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _token_ids(tokenizer, prompt: Any, answer: Any, add_eos: bool) -> tuple[list[int], list[int]]:
    """(ids of the prompt alone, ids of prompt + answer)."""
    if isinstance(answer, list):  # conversational
        messages = (prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]) if prompt else []

        def template(conversation: list) -> list[int]:
            if not conversation:
                return []
            return list(tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"])

        return template(messages), template(messages + answer)
    prompt = prompt or ""
    text = prompt + answer
    if add_eos and not text.endswith(tokenizer.eos_token):
        text += tokenizer.eos_token
    prompt_ids = list(tokenizer(text=prompt)["input_ids"]) if prompt else []
    return prompt_ids, list(tokenizer(text=text)["input_ids"])


def encode_prompt_answer(tokenizer, prompt: Any, answer: Any, max_length: int | None = None, add_eos: bool = True) -> Encoded:
    """Token ids of ``prompt + answer``; over ``max_length``, the prompt is cut from the left.

    :param prompt: text, a list of messages, or empty/None.
    :param answer: text, or a list of messages (then the chat template formats both).
    :param max_length: the most tokens kept; None keeps everything.
    :param add_eos: append EOS to plain text (as TRL's reward and SFT trainers do).
    """
    prompt_ids, full = _token_ids(tokenizer, prompt, answer, add_eos)
    split = common_prefix_length(prompt_ids, full)
    answer_length = len(full) - split
    if max_length is None or len(full) <= max_length:
        return Encoded(full, answer_length)
    head = full[:1] if split and tokenizer.bos_token_id is not None and full[0] == tokenizer.bos_token_id else []
    room = max_length - answer_length - len(head)
    if room < 0:  # the answer alone does not fit: keep its end (where a reward model reads the score)
        return Encoded(full[-max_length:], max_length, prompt_cut=split, fits=False)
    body = full[len(head) : split]
    kept = body[len(body) - room :] if room else []  # room < len(body), since the whole did not fit
    return Encoded(head + kept + full[split:], answer_length, prompt_cut=len(body) - len(kept))
