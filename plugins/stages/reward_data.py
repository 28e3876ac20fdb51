"""Reward-stage pairs as token ids, cut to ``max_length`` the way scoring cuts them.

TRL's RewardTrainer drops every pair longer than ``max_length``. On multi-turn
transcripts (HH-RLHF) that throws away the long conversations, and it biases the
data towards short ones. ``keep_answers`` (our default) cuts the shared prompt from
the left instead, with :func:`rlhf_plug.encoding.encode_prompt_answer`, and drops
only pairs whose answer alone does not fit. ``drop`` is TRL's behaviour. The rows
go to TRL pre-tokenized (``chosen_ids`` / ``rejected_ids``), so TRL's own
tokenization and filter leave them as they are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rlhf_plug.data import pair_with_prompt
from rlhf_plug.encoding import encode_prompt_answer

Truncation = Literal["keep_answers", "drop"]
#: Written into a reward stage's output: how its inputs were built, for ``learned_rm``.
INPUT_FORMAT_FILE = "reward_input.json"


@dataclass
class PairCounts:
    kept: int = 0
    truncated: int = 0  # kept, with the prompt cut from the left
    dropped: int = 0  # too long: an answer alone (keep_answers) or the whole pair (drop)


def tokenize_pairs(rows: list[dict], tokenizer, max_length: int | None, truncation: Truncation):
    """(``datasets.Dataset`` with ``chosen_ids``, ``rejected_ids``, ``length`` [, ``margin``], :class:`PairCounts`).

    ``length`` (the longer side) is what ``train_sampling_strategy: group_by_length`` sorts by.
    """
    from datasets import Dataset

    counts = PairCounts()
    out: list[dict] = []
    for row in rows:
        row = pair_with_prompt(row)
        chosen = encode_prompt_answer(tokenizer, row["prompt"], row["chosen"], max_length)
        rejected = encode_prompt_answer(tokenizer, row["prompt"], row["rejected"], max_length)
        cut = bool(chosen.prompt_cut or rejected.prompt_cut)
        if not (chosen.fits and rejected.fits) or (cut and truncation == "drop"):
            counts.dropped += 1
            continue
        counts.kept += 1
        counts.truncated += cut
        longest = max(len(chosen.input_ids), len(rejected.input_ids))
        item = {"chosen_ids": chosen.input_ids, "rejected_ids": rejected.input_ids, "length": longest}
        if "margin" in row:
            item["margin"] = float(row["margin"])
        out.append(item)
    return Dataset.from_list(out), counts


def write_input_format(directory: Path, max_length: int | None) -> None:
    (directory / INPUT_FORMAT_FILE).write_text(json.dumps({"max_length": max_length}) + "\n", encoding="utf-8")


def read_max_length(directory: Path) -> int | None:
    """The ``max_length`` a reward stage trained with (given its folder or its ``model/``, ``adapter/``);
    None (no cut) for models from elsewhere."""
    from rlhf_plug.stage import ADAPTER_DIR, MODEL_DIR

    candidates = [directory, directory.parent] if directory.name in (MODEL_DIR, ADAPTER_DIR) else [directory]
    for path in (d / INPUT_FORMAT_FILE for d in candidates):
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8")).get("max_length")
    return None


def with_explicit_prompts(pairs):
    """Held-out pairs with their shared prompt in a ``prompt`` column, so scoring can cut it as training did."""
    from datasets import Dataset

    return Dataset.from_list([pair_with_prompt(row) for row in pairs.to_list()]) if pairs is not None else None
