"""Real preference data at real lengths: HH-style transcripts, truncation that keeps the answers,
one preference file feeding SFT, reward and PPO, and training and scoring that agree."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest
from helpers import REPO, cli, write_jsonl, write_recipe
from rich.console import Console

from rlhf_plug.data import convert_rows, load_split, pair_with_prompt, prepare_rows, split_pair
from rlhf_plug.encoding import encode_prompt_answer
from rlhf_plug.models import load_tokenizer
from rlhf_plug.recipe import DataRef, load_recipe
from rlhf_plug.runner import run_recipe

DEV_FILE = REPO.parent / "shared" / "data" / "hh-rlhf" / "harmless-dev.jsonl.gz"


def hh_row(turns: int, chosen: str = " The answer is good.", rejected: str = " The answer is bad.", tag: str = "") -> dict:
    """An HH-RLHF-style pair: ``turns`` earlier exchanges, then two different last answers."""
    history = "".join(f"\n\nHuman: question {i} is good?\n\nAssistant: answer {i} is good." for i in range(turns))
    prompt = history + f"\n\nHuman: is this good?{tag}\n\nAssistant:"
    return {"chosen": prompt + chosen, "rejected": prompt + rejected}


# --- the shared prompt --------------------------------------------------------------------


def test_split_pair_cuts_hh_transcripts_at_the_last_assistant_turn():
    row = hh_row(2)
    prompt, chosen, rejected = split_pair(row)
    assert prompt.endswith("\n\nHuman: is this good?\n\nAssistant:")
    assert (chosen, rejected) == (" The answer is good.", " The answer is bad.")
    assert prompt + chosen == row["chosen"]


def test_split_pair_for_messages_explicit_prompts_and_plain_text():
    user = {"role": "user", "content": "hi"}
    good, bad = {"role": "assistant", "content": "good"}, {"role": "assistant", "content": "bad"}
    assert split_pair({"chosen": [user, good], "rejected": [user, bad]}) == ([user], [good], [bad])
    assert split_pair({"prompt": "Q:", "chosen": " a", "rejected": " b"}) == ("Q:", " a", " b")
    assert split_pair({"chosen": "The answer is 4", "rejected": "The answer is 5"}) == ("The answer is", " 4", " 5")


def test_one_preference_file_feeds_sft_and_ppo(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [hh_row(i % 3) | {"id": i} for i in range(6)])

    class Source:
        def describe(self):
            return str(path)

        def load(self):
            return [json.loads(line) for line in path.read_text().splitlines()]

    sft = load_split(Source(), DataRef(use="file"), accept=("prompt_completion", "conversational"), seed=0)
    assert sft.format == "prompt_completion"
    first = sft.train[0]
    assert first["completion"] == " The answer is good." and first["prompt"].endswith("\n\nAssistant:")
    assert "id" in first, "other columns are kept"
    assert any("chosen answer" in note for note in sft.notes)
    ppo = load_split(Source(), DataRef(use="file"), accept=("prompt_only", "prompt_completion"), seed=0)
    assert ppo.format == "prompt_only" and set(ppo.train.column_names) == {"prompt", "id"}
    assert ppo.train[0]["prompt"].endswith("\n\nAssistant:")


def test_rankings_give_prompts_and_best_completions():
    rows = [{"prompt": "Q", "completions": [" best", " worse"]}]
    rows, fmt = prepare_rows(rows, source="x", columns={}, fmt="auto", accept=("prompt_completion",), limit=None)
    assert convert_rows(rows, fmt, ("prompt_completion",))[:2] == ([{"prompt": "Q", "completion": " best"}], "prompt_completion")


def test_pairs_with_one_prompt_share_a_split():
    from rlhf_plug.data import split_rows

    rows = [hh_row(1, chosen=f" yes {i}", rejected=f" no {i}") for i in range(4)] + [hh_row(3) for _ in range(4)]
    train, held = split_rows(rows, 0.5, seed=1)
    prompts = lambda part: {split_pair(r)[0] for r in part}  # noqa: E731
    assert prompts(train).isdisjoint(prompts(held))


# --- truncation -------------------------------------------------------------------------


def test_encoding_matches_trl_and_cuts_the_prompt_from_the_left(tiny_model):
    tokenizer = load_tokenizer(str(tiny_model))
    prompt, chosen, _ = split_pair(hh_row(30))
    whole = encode_prompt_answer(tokenizer, prompt, chosen)
    assert whole.input_ids == tokenizer(text=prompt + chosen + tokenizer.eos_token)["input_ids"]  # TRL's format
    cut = encode_prompt_answer(tokenizer, prompt, chosen, max_length=64)
    assert len(cut.input_ids) == 64 and cut.fits
    assert cut.input_ids[-cut.answer_length :] == whole.input_ids[-whole.answer_length :], "the answer is kept whole"
    assert cut.input_ids == whole.input_ids[-64:], "what is kept of the prompt is its end"
    assert cut.prompt_cut == len(whole.input_ids) - 64
    assert tokenizer.decode(cut.input_ids).endswith("is this good?\n\nAssistant: The answer is good.<|im_end|>")
    too_long = encode_prompt_answer(tokenizer, prompt, " good" * 80, max_length=64)
    assert not too_long.fits


def test_tokenize_pairs_keeps_answers_counts_truncated_and_dropped(tiny_model):
    from rlhf_plug_plugins.stages.reward_data import tokenize_pairs

    tokenizer = load_tokenizer(str(tiny_model))
    rows = [hh_row(0), hh_row(30), hh_row(1, chosen=" good" * 80)]
    data, counts = tokenize_pairs(rows, tokenizer, 64, "keep_answers")
    assert (counts.kept, counts.truncated, counts.dropped) == (2, 1, 1)
    assert all(len(ids) <= 64 for ids in list(data["chosen_ids"]) + list(data["rejected_ids"]))
    long_chosen = data[1]["chosen_ids"]
    assert tokenizer.decode(long_chosen).endswith("\n\nAssistant: The answer is good.<|im_end|>")
    assert data[1]["length"] == max(len(long_chosen), len(data[1]["rejected_ids"]))
    _, dropped = tokenize_pairs(rows, tokenizer, 64, "drop")
    assert (dropped.kept, dropped.truncated, dropped.dropped) == (1, 0, 2)  # TRL's behaviour


def test_training_and_scoring_format_a_long_transcript_the_same_way(tiny_model):
    """What the reward stage trains on is what learned_rm and rm_accuracy score."""
    from rlhf_plug_plugins.stages.reward_data import tokenize_pairs
    from rlhf_plug.rm_scoring import reward_input_ids

    tokenizer = load_tokenizer(str(tiny_model))
    row = hh_row(40)
    trained, _ = tokenize_pairs([row], tokenizer, 96, "keep_answers")
    explicit = pair_with_prompt(row)
    for side in ("chosen", "rejected"):
        scored = reward_input_ids(tokenizer, explicit["prompt"], explicit[side], 96)
        assert scored == trained[0][f"{side}_ids"]
        assert len(scored) == 96


def test_sft_tokenization_matches_trl_and_keeps_the_completion(tmp_path, tiny_model):
    from datasets import Dataset
    from rlhf_plug_plugins.stages.sft_data import tokenize_completions
    from trl import SFTConfig, SFTTrainer

    tokenizer = load_tokenizer(str(tiny_model))
    short = [{"prompt": "Q: is this good?\n\nA:", "completion": " The answer is good."}]
    def prepared(data, **config):
        args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", **config)
        return SFTTrainer(model=str(tiny_model), args=args, train_dataset=data, processing_class=tokenizer).train_dataset[0]

    from_text = prepared(Dataset.from_list(short))
    ours, truncated, dropped = tokenize_completions(Dataset.from_list(short), tokenizer, 128)
    from_ours = prepared(ours, completion_only_loss=True)  # as the sft stage passes it
    assert (from_ours["input_ids"], from_ours["labels"]) == (from_text["input_ids"], from_text["labels"])
    assert -100 in from_ours["labels"], "the prompt is masked out of the loss"
    prompt, chosen, _ = split_pair(hh_row(30))
    long, truncated, dropped = tokenize_completions(Dataset.from_list([{"prompt": prompt, "completion": chosen}]), tokenizer, 64)
    ids, mask = long[0]["input_ids"], long[0]["completion_mask"]
    assert (len(ids), truncated, dropped) == (64, 1, 0)
    assert tokenizer.decode([t for t, m in zip(ids, mask) if m]) == " The answer is good.<|im_end|>"


REWARD = """
name: hh-test
model: {model}
output_dir: {out}
quantization: none
stages:
  - reward:
      data: {{use: file, with: {{path: {data}}}, eval_fraction: 0.25}}
      lora: {{r: 8, lora_alpha: 16}}
      args: {{max_steps: 2, per_device_train_batch_size: 4, max_length: 64}}
"""


def test_reward_stage_reports_truncation_and_records_its_input_format(tmp_path, tiny_model, registries, pm):
    from rlhf_plug_plugins.stages.reward_data import read_max_length

    rows = [hh_row(30 if i % 2 else 0, tag=f" {i}") for i in range(16)]
    rows += [hh_row(0, chosen=" good" * 80, tag=f" long {i}") for i in range(4)]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    recipe = write_recipe(tmp_path / "recipe.yaml", REWARD.format(model=tiny_model, out=tmp_path / "runs", data=data))
    console = Console(file=io.StringIO(), width=300)
    results = run_recipe(load_recipe(recipe, registries), registries, pm, console)["reward"]
    assert results["train_pairs"] == 15
    assert results["truncated_pairs"] > 0 and results["dropped_pairs"] > 0
    assert results["truncated_pairs"] + results["dropped_pairs"] < 15
    assert "had their prompt cut from the left" in console.file.getvalue()
    assert "reward: step 2/2  elapsed" in console.file.getvalue(), "not a terminal: plain progress lines"
    out = tmp_path / "runs" / "hh-test" / "reward"
    assert read_max_length(out) == 64 and read_max_length(out / "model") == 64


# --- the dev slice of real HH-RLHF (skips without ../shared) ------------------------------------


@pytest.mark.skipif(not DEV_FILE.is_file(), reason="../shared/data/hh-rlhf is not here")
def test_real_hh_rlhf_slice_splits_and_truncates(tiny_model):
    from rlhf_plug_plugins.stages.reward_data import tokenize_pairs

    with gzip.open(DEV_FILE, "rt", encoding="utf-8") as fh:
        rows = [json.loads(next(fh)) for _ in range(200)]
    for row in rows:
        prompt, chosen, rejected = split_pair(row)
        assert prompt.endswith("\n\nAssistant:") and prompt + chosen == row["chosen"] and prompt + rejected == row["rejected"]
    tokenizer = load_tokenizer(str(tiny_model))
    data, counts = tokenize_pairs(rows, tokenizer, 256, "keep_answers")
    _, dropping = tokenize_pairs(rows, tokenizer, 256, "drop")
    assert counts.kept + counts.dropped == 200 and counts.truncated > 0
    assert counts.kept > dropping.kept, "cutting prompts keeps pairs that TRL's filter drops"


@pytest.mark.skipif(not DEV_FILE.is_file(), reason="../shared/data/hh-rlhf is not here")
def test_hh_rlhf_recipe_validates_on_the_local_file():
    proc = cli("validate", "hh-rlhf", "--set", f"datasets.hh={{use: file, with: {{path: {DEV_FILE}}}}}")
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout and "sft -> reward -> ppo" in proc.stdout
    assert "800 rows" in proc.stdout and "720 train / 80 eval" in proc.stdout


# --- one named dataset for every stage ---------------------------------------------------------

NAMED = """
name: named
model: {model}
quantization: none
datasets:
  pairs: {{use: builtin, with: {{name: rankings}}}}
stages:
  - sft: {{data: {{use: pairs, limit: 8, eval_fraction: 0.25}}}}
  - reward: {{data: {{use: pairs, limit: 8, eval_fraction: 0.25}}}}
"""


def test_a_recipe_dataset_feeds_every_stage_and_one_set_switches_it(tmp_path, tiny_model, registries, pm):
    from rlhf_plug.runner import check_recipe

    recipe = write_recipe(tmp_path / "recipe.yaml", NAMED.format(model=tiny_model))
    console = Console(file=io.StringIO(), width=300)
    check_recipe(load_recipe(recipe, registries), registries, pm, console)
    shown = console.file.getvalue()
    assert shown.count("8 rows from builtin:rankings") == 2 and "6 train / 2 eval" in shown
    assert "rankings rows used as prompt_completion" in shown
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [hh_row(0, tag=f" {i}") for i in range(10)])
    console = Console(file=io.StringIO(), width=300)
    loaded = load_recipe(recipe, registries, [f"datasets.pairs={{use: file, with: {{path: {pairs}}}}}"])
    check_recipe(loaded, registries, pm, console)
    assert console.file.getvalue().count(f"8 rows from {pairs}") == 2, "the stage's limit still applies"


def test_a_recipe_dataset_may_not_shadow_a_data_source(tmp_path, tiny_model, registries, pm):
    from rlhf_plug.errors import RecipeError
    from rlhf_plug.runner import check_recipe

    body = NAMED.format(model=tiny_model).replace("pairs", "file")
    recipe = write_recipe(tmp_path / "recipe.yaml", body)
    with pytest.raises(RecipeError, match="both a recipe dataset and a data source"):
        check_recipe(load_recipe(recipe, registries), registries, pm, Console(file=io.StringIO()))
