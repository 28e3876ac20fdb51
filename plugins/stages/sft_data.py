"""SFT prompt/completion text as token ids, cut to ``max_length`` from the left of the prompt.

TRL's SFTTrainer only truncates from the right (``truncation_mode: keep_start``), which on a
long transcript cuts off the completion, the one part SFT learns from. We tokenize plain-text
prompt/completion rows with :func:`rlhf_plug.encoding.encode_prompt_answer` (TRL's own
format: ``prompt + completion + EOS``, the completion starting where the tokenized prompt and
the whole diverge), cut the prompt from the left, and hand TRL ``input_ids`` with a
``completion_mask``. Rows whose completion alone does not fit are dropped and counted.
Conversational rows are left to TRL's chat-template path.
"""

from __future__ import annotations

from rlhf_plug.encoding import encode_prompt_answer


def is_text_prompt_completion(dataset) -> bool:
    first = dataset[0]
    return isinstance(first.get("prompt"), str) and isinstance(first.get("completion"), str)


def tokenize_completions(dataset, tokenizer, max_length: int | None):
    """(``datasets.Dataset`` of ``input_ids`` + ``completion_mask``, rows truncated, rows dropped)."""
    from datasets import Dataset

    rows, truncated, dropped = [], 0, 0
    for row in dataset:
        encoded = encode_prompt_answer(tokenizer, row["prompt"], row["completion"], max_length)
        if not encoded.fits:
            dropped += 1
            continue
        truncated += bool(encoded.prompt_cut)
        mask = [0] * encoded.prompt_length + [1] * encoded.answer_length
        rows.append({"input_ids": encoded.input_ids, "completion_mask": mask})
    return Dataset.from_list(rows), truncated, dropped
