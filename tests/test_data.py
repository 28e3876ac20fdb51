"""rlhf_plug.data: formats, row checks, column mapping, rankings and splits."""

from __future__ import annotations

import pytest
from helpers import write_jsonl
from rlhf_plug_plugins.data.sources import (
    FileSource,
)

from rlhf_plug.data import (
    FORMATS,
    detect_format,
    expand_rankings,
    load_split,
    prepare_rows,
    split_rows,
)
from rlhf_plug.errors import DataError
from rlhf_plug.recipe import DataRef

PC_ROWS = [
    {"prompt": "What is 2 + 2?", "completion": "4"},
    {"prompt": "What is 3 + 3?", "completion": "6"},
    {"prompt": "Say hi.", "completion": "Hi!"},
]


def ref(**kwargs) -> DataRef:
    """A DataRef as a recipe would produce it (``use`` is irrelevant to load_split)."""
    return DataRef.model_validate({"use": "file", **kwargs})


def prep(rows, fmt="auto", columns=None, accept=tuple(FORMATS), limit=None, source="data.jsonl"):
    return prepare_rows(rows, source=source, columns=columns or {}, fmt=fmt, accept=accept, limit=limit)


# --------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "columns, expected",
    [
        (["prompt", "completions"], "rankings"),
        (["prompt", "completions", "id"], "rankings"),
        (["chosen", "rejected"], "preference"),
        (["prompt", "chosen", "rejected"], "preference"),
        (["messages"], "conversational"),
        (["prompt", "completion"], "prompt_completion"),
        (["text"], "language_modeling"),
        (["prompt"], "prompt_only"),
        (["prompt", "metadata"], "prompt_only"),
        (["question", "answer"], None),
        ([], None),
    ],
)
def test_detect_format(columns, expected):
    assert detect_format(columns) == expected


def test_every_format_is_detectable_from_its_own_columns():
    for name, cols in FORMATS.items():
        assert detect_format(cols) == name


# --------------------------------------------------------------------------
# Rankings and splits
# --------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_rankings_expand_to_all_ordered_pairs(k):
    ranking = [f"answer {i}" for i in range(k)]  # best first
    pairs = expand_rankings([{"prompt": "p", "completions": ranking, "source": "x"}])
    assert len(pairs) == k * (k - 1) // 2
    assert len({(p["chosen"], p["rejected"]) for p in pairs}) == len(pairs)  # no duplicates
    for pair in pairs:
        assert ranking.index(pair["chosen"]) < ranking.index(pair["rejected"])
        assert pair["prompt"] == "p"
        assert pair["source"] == "x"  # extra columns are carried along
        assert "completions" not in pair


def test_rankings_expand_several_rows():
    rows = [
        {"prompt": "a", "completions": ["a1", "a2", "a3"]},
        {"prompt": "b", "completions": ["b1", "b2"]},
    ]
    pairs = expand_rankings(rows)
    assert len(pairs) == 3 + 1
    assert [p for p in pairs if p["prompt"] == "b"] == [{"prompt": "b", "chosen": "b1", "rejected": "b2"}]


def _grouped_rows():
    rows = []
    for p in range(30):
        for c in range(p % 3 + 1):  # 1 to 3 rows per prompt
            rows.append({"prompt": f"prompt {p}", "completion": f"answer {c}"})
    return rows


def test_split_keeps_prompt_groups_together():
    rows = _grouped_rows()
    train, held = split_rows(rows, 0.2, seed=1)
    assert len(train) + len(held) == len(rows)
    assert held, "eval split should not be empty"
    train_prompts = {r["prompt"] for r in train}
    held_prompts = {r["prompt"] for r in held}
    assert not train_prompts & held_prompts
    for prompt in held_prompts:
        assert sum(r["prompt"] == prompt for r in held) == sum(r["prompt"] == prompt for r in rows)
    assert len(held_prompts) == round(30 * 0.2)


def test_split_groups_conversations_by_context():
    conv = lambda q, a: {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}  # noqa: E731
    rows = [conv(f"q{i}", f"a{j}") for i in range(10) for j in range(2)]
    train, held = split_rows(rows, 0.3, seed=0)
    held_q = {r["messages"][0]["content"] for r in held}
    train_q = {r["messages"][0]["content"] for r in train}
    assert held_q and not held_q & train_q


def test_split_is_deterministic_for_a_seed():
    rows = _grouped_rows()
    assert split_rows(rows, 0.2, seed=3) == split_rows(rows, 0.2, seed=3)
    helds = {tuple(r["prompt"] for r in split_rows(rows, 0.2, seed=s)[1]) for s in range(5)}
    assert len(helds) > 1, "different seeds should give different splits"


def test_split_without_eval_fraction_keeps_everything():
    rows = _grouped_rows()
    assert split_rows(rows, 0.0, seed=0) == (rows, [])


# --------------------------------------------------------------------------
# prepare_rows / load_split errors
# --------------------------------------------------------------------------


def test_prepare_rows_detects_and_limits():
    rows, fmt = prep(PC_ROWS, limit=2)
    assert fmt == "prompt_completion"
    assert rows == PC_ROWS[:2]


def test_prepare_rows_empty_dataset():
    with pytest.raises(DataError, match=r"^data\.jsonl: the dataset is empty$"):
        prep([])


def test_load_split_empty_file_names_the_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="empty") as info:
        load_split(FileSource(str(path)), ref(), accept=("prompt_completion",), seed=0)
    assert str(path) in str(info.value)


def test_prepare_rows_missing_column_for_the_stage():
    rows = [{"prompt": "only a prompt"}]
    with pytest.raises(DataError) as info:
        prep(rows, accept=("prompt_completion", "conversational"))
    message = str(info.value)
    assert message.startswith("data.jsonl:")
    assert "'completion'" in message
    assert "prompt_only" in message


def test_prepare_rows_unrecognised_columns():
    with pytest.raises(DataError, match="unrecognised columns") as info:
        prep([{"question": "q", "answer": "a"}])
    assert "'question'" in str(info.value)


def test_prepare_rows_explicit_format_missing_column():
    with pytest.raises(DataError, match="missing column 'completion' for format 'prompt_completion'"):
        prep([{"prompt": "p"}], fmt="prompt_completion")


def test_prepare_rows_wrong_type_names_row_and_column():
    rows = [dict(PC_ROWS[0]), {"prompt": "What is 1 + 1?", "completion": 2}]
    with pytest.raises(DataError) as info:
        prep(rows)
    message = str(info.value)
    assert message.startswith("data.jsonl: row 2, column 'completion':")
    assert "int" in message


def test_prepare_rows_empty_string_names_row_and_column():
    rows = [dict(PC_ROWS[0]), dict(PC_ROWS[1]), {"prompt": "   ", "completion": "x"}]
    with pytest.raises(DataError, match=r"row 3, column 'prompt': is empty"):
        prep(rows)


def test_prepare_rows_bad_messages():
    rows = [{"messages": [{"role": "user", "content": "hi"}]}, {"messages": [{"role": "user"}]}]
    with pytest.raises(DataError, match=r"row 2, column 'messages'"):
        prep(rows)


def test_prepare_rows_ranking_with_one_entry():
    rows = [
        {"prompt": "a", "completions": ["x", "y"]},
        {"prompt": "b", "completions": ["only one"]},
    ]
    with pytest.raises(DataError) as info:
        prep(rows, accept=("preference", "rankings"))
    message = str(info.value)
    assert message.startswith("data.jsonl: row 2, column 'completions':")
    assert "at least 2" in message


def test_prepare_rows_preference_checks_prompt_too():
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "", "chosen": "a", "rejected": "b"}]
    with pytest.raises(DataError, match=r"row 2, column 'prompt'"):
        prep(rows)


def test_load_split_wrong_type_in_a_file_names_file_row_and_column(tmp_path):
    # A realistic file: the first rows are fine, one row has an int completion.
    path = write_jsonl(tmp_path / "demos.jsonl", [*PC_ROWS, {"prompt": "What is 1 + 1?", "completion": 2}])
    with pytest.raises(DataError) as info:
        load_split(FileSource(str(path)), ref(), accept=("prompt_completion",), seed=0)
    message = str(info.value)
    assert str(path) in message
    assert "row 4" in message
    assert "'completion'" in message


def test_load_split_all_rows_wrong_type(tmp_path):
    path = write_jsonl(tmp_path / "demos.jsonl", [{"prompt": "a", "completion": 1}, {"prompt": "b", "completion": 2}])
    with pytest.raises(DataError) as info:
        load_split(FileSource(str(path)), ref(), accept=("prompt_completion",), seed=0)
    assert str(info.value).startswith(f"{path}: row 1, column 'completion':")


def test_load_split_ranking_with_one_entry_in_a_file(tmp_path):
    rows = [{"prompt": "a", "completions": ["x", "y", "z"]}, {"prompt": "b", "completions": ["solo"]}]
    path = write_jsonl(tmp_path / "ranks.jsonl", rows)
    with pytest.raises(DataError) as info:
        load_split(FileSource(str(path)), ref(), accept=("preference",), seed=0)
    assert str(info.value).startswith(f"{path}: row 2, column 'completions':")


def test_load_split_wrong_format_for_the_stage(tmp_path):
    path = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "a"}, {"prompt": "b"}])
    with pytest.raises(DataError) as info:
        load_split(FileSource(str(path)), ref(), accept=("preference",), seed=0)
    message = str(info.value)
    assert str(path) in message
    assert "'chosen'" in message and "'rejected'" in message


def test_column_mapping_renames(tmp_path):
    rows = [{"question": f"q{i}", "answer": f"a{i}", "id": i} for i in range(10)]
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    split = load_split(
        FileSource(str(path)),
        ref(columns={"prompt": "question", "completion": "answer"}, eval_fraction=0.2),
        accept=("prompt_completion",),
        seed=0,
    )
    assert split.format == "prompt_completion"
    assert set(split.train.column_names) == {"prompt", "completion", "id"}
    assert len(split.train) + len(split.eval) == 10
    got = {r["id"]: (r["prompt"], r["completion"]) for r in [*split.train.to_list(), *split.eval.to_list()]}
    assert got == {i: (f"q{i}", f"a{i}") for i in range(10)}


def test_column_mapping_to_a_missing_column_names_it(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(DataError) as info:
        load_split(
            FileSource(str(path)),
            ref(columns={"prompt": "question", "completion": "reply"}),
            accept=("prompt_completion",),
            seed=0,
        )
    message = str(info.value)
    assert str(path) in message
    assert "'reply'" in message
    assert "'completion'" in message
    assert "answer" in message and "question" in message  # the available columns


def test_load_split_expands_rankings_after_splitting(tmp_path):
    rows = [{"prompt": f"p{i}", "completions": [f"best{i}", f"mid{i}", f"worst{i}"]} for i in range(20)]
    path = write_jsonl(tmp_path / "ranks.jsonl", rows)
    split = load_split(FileSource(str(path)), ref(eval_fraction=0.25), accept=("preference",), seed=0)
    assert split.format == "preference"
    assert len(split.train) + len(split.eval) == 20 * 3
    assert len(split.eval) == 5 * 3
    train_prompts = set(split.train["prompt"])
    eval_prompts = set(split.eval["prompt"])
    assert not train_prompts & eval_prompts
    assert any("expanded" in note for note in split.notes)


def test_load_split_limit_applies_before_expansion(tmp_path):
    rows = [{"prompt": f"p{i}", "completions": ["a", "b", "c"]} for i in range(10)]
    path = write_jsonl(tmp_path / "ranks.jsonl", rows)
    split = load_split(FileSource(str(path)), ref(eval_fraction=0.0, limit=4), accept=("preference",), seed=0)
    assert split.eval is None
    assert len(split.train) == 4 * 3


