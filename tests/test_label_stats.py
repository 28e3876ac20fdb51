"""``rlhf-plug label stats FILE``: agreement between annotators, with a judge, and rating averages, on a hand-made file.

Every figure below is counted by hand from :func:`hand_made_rows`.
"""

from __future__ import annotations

import pytest
from helpers import write_jsonl

from rlhf_plug.cli import main
from rlhf_plug.labeling import agreement

JUDGE_PLUGIN = """
from rlhf_plug import hookimpl


class LongerIsBetter:
    \"\"\"Scores an answer by its length.\"\"\"

    def __call__(self, prompts, completions, **kw):
        return [float(len(c)) for c in completions]


@hookimpl
def rlhf_register_reward_functions(register):
    register("longer_is_better", LongerIsBetter)
"""


def hand_made_rows() -> list[dict]:
    """P1 (4 answers) by alice, bob and carol; P2 (3 answers) by alice and bob; P3 by alice alone.

    Between annotators (answer pairs ordered the same):
      alice/bob: P1 5 of 6 (only b/c swapped) + P2 3 of 3 = 8 of 9;  alice/carol: P1 0 of 6 (reversed);
      bob/carol: P1 1 of 6 (only c above b);  overall 9 of 21.
    The judge prefers longer answers (d > c > b > a, zzz > yy > x); in P3 "pp" and "qq" tie:
      alice 0 of 6 + 0 of 3 + 2 of 2 = 2 of 11 (1 tie); bob 1 of 6 + 0 of 3 = 1 of 9; carol 6 of 6.
    """
    p1, p2, p3 = "Prompt one?", "Prompt two?", "Prompt three?"
    return [
        {"prompt": p1, "completions": ["a", "bb", "ccc", "dddd"], "annotator": "alice",
         "ratings": {"helpful": [7, 5, 3, 1], "honest": [7, None, None, 1]},
         "flags": [[], [], ["hallucination"], ["harmful", "hallucination"]], "comment": "", "timestamp": "t"},
        {"prompt": p1, "completions": ["a", "ccc", "bb", "dddd"], "annotator": "bob",
         "ratings": {"helpful": [6, 4, None, 2], "honest": [None, None, None, None]}},
        {"prompt": p1, "completions": ["dddd", "ccc", "bb", "a"], "annotator": "carol"},
        {"prompt": p2, "completions": ["x", "yy", "zzz"], "annotator": "alice"},
        {"prompt": p2, "completions": ["x", "yy", "zzz"], "annotator": "bob"},
        {"prompt": p3, "completions": ["pp", "qq", "r"], "annotator": "alice"},
    ]


def test_agreement_between_annotators_counted_by_hand():
    pairs, overall = agreement.between_annotators(hand_made_rows())
    assert {k: (t.agree, t.pairs, t.prompts) for k, t in pairs.items()} == {
        ("alice", "bob"): (8, 9, 2), ("alice", "carol"): (0, 6, 1), ("bob", "carol"): (1, 6, 1)}
    assert (overall.agree, overall.pairs, overall.prompts) == (9, 21, 2)


def test_agreement_with_a_judge_counted_by_hand():
    tallies = agreement.with_judge(hand_made_rows(), lambda prompt, completions: [float(len(c)) for c in completions])
    assert {k: (t.agree, t.pairs, t.ties) for k, t in tallies.items()} == {
        "alice": (2, 11, 1), "bob": (1, 9, 0), "carol": (6, 6, 0)}


def test_answers_are_matched_by_content_and_repeats_left_out():
    assert agreement.pair_agreement(["a", "b", "c"], ["c", "b", "a"]) == (0, 3)
    assert agreement.pair_agreement(["a", "b", "b", "c"], ["c", "b", "b", "a"]) == (0, 1)  # "b" twice: only a/c


def test_rating_averages_and_flags():
    averages = agreement.rating_averages(hand_made_rows())
    helpful, honest = averages["helpful"], averages["honest"]
    assert (helpful.count, helpful.mean, helpful.best, helpful.worst) == (7, 4.0, 6.5, 1.5)
    assert (honest.count, honest.mean, honest.best, honest.worst) == (2, 4.0, 7.0, 1.0)
    assert agreement.flag_counts(hand_made_rows()) == ({"hallucination": 2, "harmful": 1}, 4)


def test_the_command_prints_the_tables(tmp_path, make_module, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    path = write_jsonl(tmp_path / "rankings.jsonl", hand_made_rows())
    plugin = make_module("label_stats_judge", JUDGE_PLUGIN)
    code = main(["-p", plugin, "label", "stats", str(path), "--judge", "longer_is_better"])
    out = capsys.readouterr().out
    assert code == 0
    assert "6 rankings of 3 prompts by 3 annotator(s): alice, bob, carol" in out
    lines = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]] for line in out.splitlines()
             if line.count("│") >= 4}
    assert lines["alice / bob"] == ["2", "9", "88.9%"]
    assert lines["alice / carol"] == ["1", "6", "0.0%"] and lines["bob / carol"] == ["1", "6", "16.7%"]
    assert lines["overall"] == ["2", "21", "42.9%"]
    assert lines["alice"] == ["3", "11", "18.2%", "1"] and lines["carol"] == ["1", "6", "100.0%", "0"]
    assert lines["helpful"] == ["7", "4.00", "6.50", "1.50"]
    assert "Flags on 4 answers: hallucination 2 (50%), harmful 1 (25%)" in out


def test_stats_leaves_the_label_options_alone_and_reports_bad_input(tmp_path, capsys):
    path = write_jsonl(tmp_path / "r.jsonl", [{"prompt": "p", "completions": ["only one"]}])
    assert main(["label", "stats", str(path)]) == 2
    assert f"{path}: row 1, column 'completions': a ranking needs at least 2 completions" in capsys.readouterr().err
    assert main(["label", "stats", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err
    single = write_jsonl(tmp_path / "one.jsonl", hand_made_rows()[:1])
    assert main(["label", "stats", str(single), "--judge", "no_such_judge"]) == 2
    assert "--judge: unknown reward function 'no_such_judge'" in capsys.readouterr().err
    assert main(["label", "stats", str(single)]) == 0
    assert "No prompt was ranked by two annotators" in capsys.readouterr().out


@pytest.mark.parametrize("judge", ["simulated_annotator"])
def test_a_registered_judge_from_the_defaults(tmp_path, capsys, judge):
    path = write_jsonl(tmp_path / "r.jsonl", [
        {"prompt": "What is 2 + 2?", "completions": ["The answer is 4.", "5", "I like turtles."], "annotator": "alice"}])
    assert main(["label", "stats", str(path), "--judge", judge]) == 0
    assert f"Agreement with the judge '{judge}'" in capsys.readouterr().out
