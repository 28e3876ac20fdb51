"""``rlhf-plug label``: typed rankings, resume, torn lines, the annotator, and the reward stage reading the output.

Sessions run the CLI's ``main`` in-process on the tiny Llama from conftest, with
``sys.stdin`` replaced, so what a person types is read by the real prompt loop.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from helpers import assert_one_line_error, cli, read_jsonl, write_jsonl

from rlhf_plug.cli import main
from rlhf_plug.errors import DataError, RewardError
from rlhf_plug.labeling.keystrokes import QUIT, SKIP, BadKeys, parse_ranking
from rlhf_plug.labeling.reward_ranker import RewardRanker
from rlhf_plug.labeling.sampling import Sampler, Samples
from rlhf_plug.labeling.store import JsonlLog

pytestmark = pytest.mark.usefixtures("one_thread")

MAX_NEW_TOKENS = 8
SEED = 7


# Fixed here, not read from the built-in set, so regenerating that data cannot change what these tests see.
# Short enough not to wrap in a panel; the tiny model's answers to the first three score differently.
TOY_PROMPTS = ["Hey, what did I eat for lunch today?", "Hey, guess the number I'm thinking of between 1 and 100.",
               "Add 87 and 13.", "What is 37 + 25?"]


def toy_prompts(n: int) -> list:
    """The first ``n`` toy prompts, conversational, as they appear in a prompts file."""
    return [[{"role": "user", "content": text}] for text in TOY_PROMPTS[:n]]


class Keyboard(io.StringIO):
    """stdin that yields the typed lines, then Ctrl-C (``interrupt``) or end of input."""

    def __init__(self, *lines: str, interrupt: bool = False):
        super().__init__("".join(f"{line}\n" for line in lines))
        self.interrupt = interrupt

    def readline(self, *args) -> str:
        line = super().readline(*args)
        if not line and self.interrupt:
            raise KeyboardInterrupt
        return line


def label(monkeypatch, capsys, model: Path, prompts: Path | str, out: Path, *extra: str, keys: Keyboard | None = None):
    """Run ``rlhf-plug label`` in-process; return (exit status, stdout, stderr)."""
    monkeypatch.setattr("sys.stdin", keys or Keyboard())
    argv = ["label", "--model", str(model), "--prompts", str(prompts), "--out", str(out),
            "--max-new-tokens", str(MAX_NEW_TOKENS), "--seed", str(SEED), *extra]
    code = main(argv)
    out_text, err_text = capsys.readouterr()
    return code, out_text, err_text


def expected_samples(model: Path, prompt, index: int, k: int = 4) -> list:
    """What the command shows for the prompt at ``index`` of the source (sampling is seeded per prompt)."""
    sampler = Sampler(str(model), max_new_tokens=MAX_NEW_TOKENS, temperature=0.8, seed=SEED)
    return sampler.sample(prompt, k, index).completions


# --------------------------------------------------------------------------
# Keystrokes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["3142", "3 1 4 2", "3,1,4,2", " 3, 1 ,4 2 "])
def test_typed_ranking_is_best_first(typed):
    assert parse_ranking(typed, 4).order == (2, 0, 3, 1)


def test_nine_completions_use_digits_1_to_9():
    assert parse_ranking("918273645", 9).order == (8, 0, 7, 1, 6, 2, 5, 3, 4)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("314", "got 3 of 4 numbers (missing 2)"),
        ("3143", "3 appears twice"),
        ("3152", "5 is not a completion number (1-4)"),
        ("0123", "0 is not a completion number (1-4)"),
        ("31x2", "'x' is not a completion number"),
        ("", "nothing typed"),
    ],
)
def test_bad_keystrokes_say_what_is_wrong(typed, message):
    with pytest.raises(BadKeys) as info:
        parse_ranking(typed, 4)
    assert str(info.value) == message


def test_skip_and_quit():
    assert parse_ranking("s", 4) == SKIP and parse_ranking(" Q ", 4) == QUIT


# --------------------------------------------------------------------------
# 1. A person ranks, skips, is interrupted, resumes
# --------------------------------------------------------------------------


def test_interactive_session_resumes_where_it_stopped(tiny_model, tmp_path, monkeypatch, capsys):
    prompts = toy_prompts(4)
    source = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in prompts])
    out = tmp_path / "rankings.jsonl"
    text = [p[0]["content"] for p in prompts]

    # Session 1: a bad ranking then 3142, skip, 4,3,2,1, then Ctrl-C at the fourth prompt.
    keys = Keyboard("12", "3142", "s", "4,3,2,1", interrupt=True)
    code, shown, _ = label(monkeypatch, capsys, tiny_model, source, out, keys=keys)
    assert code == 130
    assert "not a ranking: got 2 of 4 numbers (missing 3, 4); rank all 4 best first" in shown
    assert "interrupted" in shown and all(t in shown for t in text)
    rows = read_jsonl(out)
    assert [r["prompt"] for r in rows] == [prompts[0], prompts[2]]
    first, third = expected_samples(tiny_model, prompts[0], 0), expected_samples(tiny_model, prompts[2], 2)
    assert len({c[0]["content"] for c in first}) == 4  # distinct, so the order below is meaningful
    assert rows[0]["completions"] == [first[2], first[0], first[3], first[1]]
    assert rows[1]["completions"] == third[::-1]
    assert read_jsonl(tmp_path / "rankings.skipped.jsonl") == [{"prompt": prompts[1]}]

    # Session 2: only the fourth prompt is left; end of input quits cleanly and writes nothing.
    code, shown, _ = label(monkeypatch, capsys, tiny_model, source, out)
    assert code == 0
    assert "3 already ranked or skipped" in shown and "Prompt 1/1" in shown
    assert text[3] in shown and not any(t in shown for t in text[:3])
    assert len(read_jsonl(out)) == 2

    # Session 3: rank it; everything is done.
    code, shown, _ = label(monkeypatch, capsys, tiny_model, source, out, keys=Keyboard("2 1 3 4"))
    assert code == 0
    fourth = expected_samples(tiny_model, prompts[3], 3)
    rows = read_jsonl(out)
    assert [r["prompt"] for r in rows] == [prompts[0], prompts[2], prompts[3]]
    assert rows[2]["completions"] == [fourth[1], fourth[0], fourth[2], fourth[3]]
    code, shown, _ = label(monkeypatch, capsys, tiny_model, source, out)
    assert code == 0 and "0 to go" in shown


# --------------------------------------------------------------------------
# 2. A partially written last line
# --------------------------------------------------------------------------


def test_torn_last_line_is_removed_and_that_prompt_asked_again(tiny_model, tmp_path, monkeypatch, capsys):
    prompts = toy_prompts(2)
    source = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in prompts])
    done = {"prompt": prompts[0], "completions": [[{"role": "assistant", "content": f"answer {i}"}] for i in range(4)]}
    torn = json.dumps({"prompt": prompts[1], "completions": [[{"role": "assistant", "content": "cut"}]]})[:40]
    out = tmp_path / "rankings.jsonl"
    out.write_text(json.dumps(done) + "\n" + torn, encoding="utf-8")

    code, shown, _ = label(monkeypatch, capsys, tiny_model, source, out, "--annotator", "simulated_annotator")
    assert code == 0
    assert f"{out}: removed a partially written last line ({len(torn)} bytes)" in shown
    assert "1 already ranked or skipped" in shown
    rows = read_jsonl(out)
    assert rows[0] == done
    assert [r["prompt"] for r in rows] == prompts and len(rows[1]["completions"]) == 4


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"prompt": "a"}\n{"prompt": "b"}', encoding="utf-8")
    log = JsonlLog(path).open()
    log.append({"prompt": "c"})
    assert log.repaired == 0 and log.rows == 3
    assert [r["prompt"] for r in read_jsonl(path)] == ["a", "b", "c"]


def test_bad_line_in_the_middle_is_an_error_naming_the_row(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"prompt": "a"}\n{"prompt": \n{"prompt": "c"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"r.jsonl: row 2: invalid JSON"):
        JsonlLog(path).open()
    assert path.read_text(encoding="utf-8").count("\n") == 3  # untouched


# --------------------------------------------------------------------------
# 3. Ranking with a reward function
# --------------------------------------------------------------------------


@pytest.fixture
def annotated(tiny_model, tmp_path, monkeypatch, capsys) -> Path:
    out = tmp_path / "annotated.jsonl"
    source = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in toy_prompts(4)])
    code, shown, err = label(
        monkeypatch, capsys, tiny_model, source, out, "--annotator", "simulated_annotator", "--limit", "3", "--k", "4"
    )
    assert code == 0, err
    assert "3 ranked" in shown
    return out


def test_annotator_orders_completions_by_score(annotated):
    from rlhf_plug_plugins.rewards.annotator import score_answer, to_text

    rows = read_jsonl(annotated)
    assert [r["prompt"] for r in rows] == toy_prompts(3)
    spread = False
    for row in rows:
        assert len(row["completions"]) == 4
        scores = [score_answer(to_text(row["prompt"]), to_text(c))["total"] for c in row["completions"]]
        assert scores == sorted(scores, reverse=True), scores
        spread |= scores[0] > scores[-1]
    assert spread, "all completions tied: the test would not notice a wrong order"


def test_reward_ranker_breaks_ties_by_sample_order_and_rejects_nan():
    from rich.console import Console

    samples = Samples(["a", "b", "c", "d"], [[1], [2], [3], [4]], [True] * 4)
    quiet = Console(file=io.StringIO())
    ranker = RewardRanker(lambda prompts, completions, **kw: [0.1, 0.5, 0.5, -1.0], "fake", quiet)
    assert ranker.rank("q", samples, "1/1").order == (1, 2, 0, 3)
    broken = RewardRanker(lambda prompts, completions, **kw: [0.1, float("nan"), 0.0, 0.0], "fake", quiet)
    with pytest.raises(RewardError, match="annotator 'fake' on prompt 1/1 returned nan for completion 2"):
        broken.rank("q", samples, "1/1")


# --------------------------------------------------------------------------
# 4. The reward stage reads the output as it is
# --------------------------------------------------------------------------


def test_output_loads_as_reward_stage_pairs(annotated, registries):
    from rlhf_plug.data import load_split
    from rlhf_plug.recipe import DataRef
    from rlhf_plug_plugins.stages.reward import REWARD_FORMATS

    ref = DataRef.model_validate({"use": "file", "with": {"path": str(annotated)}, "eval_fraction": 0.0})
    source = registries.get("data_source", "file").build(ref.with_)
    split = load_split(source, ref, accept=REWARD_FORMATS, seed=0)
    rows = read_jsonl(annotated)
    ks = [len(r["completions"]) for r in rows]
    assert split.format == "preference"
    assert len(split.train) == sum(k * (k - 1) // 2 for k in ks) == 18
    # Every better-ranked completion is "chosen" over every worse one of the same prompt.
    expected = sorted(
        json.dumps([r["prompt"], r["completions"][i], r["completions"][j]])
        for r in rows for i in range(len(r["completions"])) for j in range(i + 1, len(r["completions"]))
    )
    assert sorted(json.dumps([p["prompt"], p["chosen"], p["rejected"]]) for p in split.train) == expected


# --------------------------------------------------------------------------
# 5. Bad input: one line, exit status 2
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--k", "3"], ["--k must be between 4 and 9", "got 3"]),
        (["--annotator", "simulated_anotator"], ["unknown reward function 'simulated_anotator'", "simulated_annotator, "]),
    ],
)
def test_bad_options_are_one_line_errors(tiny_model, tmp_path, extra, words):
    out = tmp_path / "r.jsonl"
    proc = cli("label", "--model", str(tiny_model), "--prompts", "builtin:prompts", "--out", str(out), *extra)
    assert_one_line_error(proc, *words)
    assert not out.exists()
