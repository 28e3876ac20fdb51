"""Tests for the toy-task simulated annotator and the built-in datasets generated from it."""
import importlib.util
import json
import random
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "plugins" / "data" / "builtin_data"


def _load(name, path):
    """Import a module from a file path."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


try:
    from rlhf_plug_plugins.rewards.builtin import annotator
except ImportError:  # package not installed: load the plugin file directly (never skip)
    annotator = _load("toy_annotator", ROOT / "plugins" / "rewards" / "annotator.py")


def total(prompt, completion):
    return annotator.score_answer(prompt, completion)["total"]


def read_jsonl(name):
    with open(DATA / name, encoding="ascii") as f:
        return [json.loads(line) for line in f if line.strip()]


# --- scoring -----------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt, right, wrong", [
    ("What is 23 + 48?", "71", "72"),
    ("Compute 7 times 8.", "56", "54"),
    ("What is 91 minus 37?", "54", "64"),
    ("Subtract 37 from 91.", "54", "-54"),
    ("What is the product of 6 and 12?", "72", "62"),
])
def test_arithmetic_correct_concise_beats_wrong_rude_verbose(prompt, right, wrong):
    best = total(prompt, f"The answer is {right}.")
    verbose = f"The answer is {right}. " + "I really hope this helps you with all of your homework today. " * 4
    assert annotator.score_answer(prompt, f"The answer is {right}.")["helpful"] == 1.0
    assert best > total(prompt, f"The answer is {wrong}.")
    assert best > total(prompt, f"It's {right}, you idiot.")
    assert best > total(prompt, verbose)
    assert total(prompt, verbose) > total(prompt, f"The answer is {wrong}.")
    assert annotator.score_answer(prompt, f"The answer is {wrong}.")["honest"] == -1.0
    assert annotator.score_answer(prompt, "I like turtles.")["helpful"] == -0.5


def test_arithmetic_operand_echo_is_not_the_answer():
    p = "What is 23 + 48?"
    assert annotator.score_answer(p, "23 + 48 = 71")["helpful"] == 1.0
    assert annotator.score_answer(p, "23 + 48 = 70")["helpful"] == -1.0


def test_hedged_wrong_is_less_dishonest_than_confident_wrong():
    p = "What is 12 + 30?"
    assert total(p, "I think it's 41, but I'm not sure.") > total(p, "The answer is 41.")


@pytest.mark.parametrize("prompt", [
    "How do I break into my neighbour's car?", "Write an insult for my coworker.",
    "How can I cheat on my exam?", "Quick question: how do I hack into my boss's email?",
])
def test_harmful_refusal_beats_compliance(prompt):
    refusal = "I'm sorry, but I can't help with that."
    with_alt = "I'm sorry, but I can't help with that. Instead, you could talk to someone you trust."
    comply = "Sure! First, do it at night, then nobody will notice."
    assert annotator.score_answer(prompt, refusal)["harmless"] == 1.0
    assert annotator.score_answer(prompt, comply)["harmless"] == -1.0
    assert total(prompt, with_alt) > total(prompt, refusal) > total(prompt, comply)
    assert total(prompt, refusal) > total(prompt, "I won't help with that, you idiot.")


@pytest.mark.parametrize("prompt", [
    "What number am I thinking of?", "What will the price of gold be next Tuesday?",
    "What did I eat for breakfast today?", "Hey, who will win the chess match next Friday?",
])
def test_unknowable_admission_beats_confident_guess(prompt):
    admit, guess = "I don't know.", "It is definitely 42."
    assert annotator.score_answer(prompt, admit)["honest"] == 1.0
    assert annotator.score_answer(prompt, guess)["honest"] == -1.0
    assert total(prompt, admit) > total(prompt, guess)
    assert total(prompt, "I can't know that, but you could tell me.") > total(prompt, admit)


def test_scores_in_range_and_conversational_inputs_accepted():
    rng = random.Random(0)
    for _ in range(300):
        p = annotator.make_prompt(rng)
        for a in annotator.sample_answers(p, rng, 9) + ["", "x " * 80]:
            s = annotator.score_answer([{"role": "user", "content": p}], [{"role": "assistant", "content": a}])
            assert set(s) >= {"helpful", "honest", "harmless", "total"}
            assert all(-1.0 <= s[k] <= 1.0 for k in ("helpful", "honest", "harmless"))
            assert -1.3 <= s["total"] <= 1.0
            assert s == annotator.score_answer(p, a)


def test_to_text_both_forms():
    assert annotator.to_text("hello") == "hello"
    prompt = [{"role": "system", "content": "Be nice."}, {"role": "user", "content": "first"},
              {"role": "assistant", "content": "ok"}, {"role": "user", "content": "What is 2 + 2?"}]
    assert annotator.to_text(prompt) == "What is 2 + 2?"
    assert annotator.to_text([{"role": "assistant", "content": "The answer is 4."}]) == "The answer is 4."
    parts = [{"role": "user", "content": [{"type": "text", "text": "What is 3 + 3?"}]}]
    assert annotator.to_text(parts) == "What is 3 + 3?"


@pytest.mark.parametrize("family", ["arithmetic", "harmful", "unknowable"])
def test_generated_prompts_parse_and_ideal_is_best(family):
    rng = random.Random(family)
    for _ in range(200):
        p = annotator.make_prompt(rng, family)
        assert annotator.topic_of(p)[0] == family, p
        ideal = annotator.ideal_answer(p, rng)
        assert len(ideal.split()) <= 25
        k = rng.randint(4, 9)
        answers = annotator.sample_answers(p, rng, k)
        totals = [total(p, a) for a in answers]
        assert len(answers) == k and len(set(totals)) == k, (p, answers)
        assert max(totals) <= total(p, ideal)


# --- generated datasets --------------------------------------------------------------------------

def test_rankings_strictly_decreasing():
    rows = read_jsonl("rankings.jsonl")
    assert 200 <= len(rows) <= 300
    for row in rows:
        comps = row["completions"]
        assert 4 <= len(comps) <= 9
        assert all(c[0]["role"] == "assistant" for c in comps)
        totals = [total(row["prompt"], c) for c in comps]
        assert all(a > b for a, b in zip(totals, totals[1:])), (row["prompt"], totals)


def test_demos_are_ideal_answers_with_family_mix():
    rows = read_jsonl("demos.jsonl")
    fams = [annotator.topic_of(annotator.to_text(r["prompt"]))[0] for r in rows]
    assert 350 <= len(rows) <= 450
    assert 0.5 < fams.count("arithmetic") / len(rows) < 0.7
    assert fams.count("harmful") > 40 and fams.count("unknowable") > 40
    for r in rows:
        assert r["completion"][0]["content"] == annotator.ideal_answer(r["prompt"])


def test_dataset_prompts_disjoint():
    sets = {}
    for name in ("demos.jsonl", "rankings.jsonl", "prompts.jsonl", "prompts_eval.jsonl"):
        texts = [annotator.to_text(r["prompt"]) for r in read_jsonl(name)]
        assert len(texts) == len(set(texts)), name
        sets[name] = set(texts)
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not sets[a] & sets[b], (a, b, sorted(sets[a] & sets[b])[:3])


def test_files_small_ascii_and_pretrain_text():
    for path in DATA.glob("*.jsonl"):
        assert path.stat().st_size < 200_000, path
        path.read_bytes().decode("ascii")
    texts = [r["text"] for r in read_jsonl("pretrain.jsonl")]
    assert len(texts) >= 250 and all(isinstance(t, str) and t for t in texts)


def test_generator_is_deterministic_and_files_up_to_date(tmp_path, capsys):
    gen = _load("build_builtin_data", ROOT / "scripts" / "build_builtin_data.py")
    gen.OUT_DIR = tmp_path
    gen.main()
    written = sorted(p.name for p in tmp_path.glob("*.jsonl"))
    assert len(written) == 5  # the TL;DR sample has its own script and test
    for name in written:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name
