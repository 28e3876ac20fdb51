"""rlhf_plug.data (formats, row checks, rankings, splits) and the default data sources."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from conftest import write_jsonl
from rlhf_plug_plugins.data_sources import (
    BUILTIN_DIR,
    BuiltinSource,
    FileSource,
    HubSource,
)

from rlhf_plug.data import (
    FORMATS,
    as_rows,
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
# The file source
# --------------------------------------------------------------------------


def _write(path: Path, rows: list[dict]) -> Path:
    name = path.name
    if name.endswith(".jsonl.gz"):
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    elif name.endswith(".jsonl"):
        write_jsonl(path, rows)
    elif name.endswith(".json"):
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif name.endswith(".csv"):
        import csv

        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif name.endswith(".parquet"):
        from datasets import Dataset

        Dataset.from_list(rows).to_parquet(str(path))
    else:
        raise AssertionError(name)
    return path


@pytest.mark.parametrize("filename", ["d.jsonl", "d.json", "d.csv", "d.parquet", "d.jsonl.gz"])
def test_file_source_reads_each_format(tmp_path, filename):
    path = _write(tmp_path / filename, PC_ROWS)
    source = FileSource(str(path))
    assert source.describe() == str(path)
    assert as_rows(source.load()) == PC_ROWS


def test_csv_values_stay_text(tmp_path):
    # CSV has no types: an answer column that happens to hold numbers is still text.
    rows = [{"prompt": "What is 2 + 2?", "completion": "4"}, {"prompt": "What is 3 + 3?", "completion": "6"}]
    path = _write(tmp_path / "math.csv", rows)
    assert as_rows(FileSource(str(path)).load()) == rows
    prepared, fmt = prep(as_rows(FileSource(str(path)).load()), accept=("prompt_completion",))
    assert fmt == "prompt_completion" and len(prepared) == 2


def test_file_source_reads_json_with_a_single_list_value(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"data": PC_ROWS}), encoding="utf-8")
    assert as_rows(FileSource(str(path)).load()) == PC_ROWS


def test_file_source_keeps_nested_messages(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    assert as_rows(FileSource(str(path)).load()) == rows


def test_file_source_skips_blank_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(PC_ROWS[0]) + "\n\n" + json.dumps(PC_ROWS[1]) + "\n", encoding="utf-8")
    assert as_rows(FileSource(str(path)).load()) == PC_ROWS[:2]


def test_file_source_unsupported_extension(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("prompt,completion\n", encoding="utf-8")
    with pytest.raises(DataError, match="unsupported file type") as info:
        FileSource(str(path)).load()
    assert "data.txt" in str(info.value)
    assert ".jsonl" in str(info.value)


def test_file_source_missing_file(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match="not found") as info:
        FileSource(str(path)).load()
    assert str(path) in str(info.value)


def test_file_source_invalid_json_line_names_the_row(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps(PC_ROWS[0]) + "\n" + json.dumps(PC_ROWS[1]) + "\n" + '{"prompt": "x", "completion": \n',
        encoding="utf-8",
    )
    with pytest.raises(DataError) as info:
        FileSource(str(path)).load()
    message = str(info.value)
    assert str(path) in message
    assert "row 3" in message
    assert "invalid JSON" in message


def test_file_source_non_object_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(PC_ROWS[0]) + "\n[1, 2]\n", encoding="utf-8")
    with pytest.raises(DataError, match="row 2: expected a JSON object"):
        FileSource(str(path)).load()


def test_file_source_invalid_json_document(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[{"prompt": "a"},\n {"prompt": }]', encoding="utf-8")
    with pytest.raises(DataError, match=r"invalid JSON at line 2"):
        FileSource(str(path)).load()


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


# --------------------------------------------------------------------------
# The builtin and hub sources
# --------------------------------------------------------------------------

BUILTIN_NAMES = sorted(p.name.removesuffix(".jsonl") for p in BUILTIN_DIR.glob("*.jsonl"))


def test_builtin_sets_exist():
    assert {"demos", "rankings", "prompts"} <= set(BUILTIN_NAMES)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_builtin_source_loads_each_set(name):
    source = BuiltinSource(name)
    assert source.describe() == f"builtin:{name}"
    rows = as_rows(source.load())
    assert rows
    fmt = detect_format(rows[0])
    assert fmt is not None
    prepared, detected = prep(rows, accept=tuple(FORMATS), source=source.describe())
    assert detected == fmt and len(prepared) == len(rows)


def test_builtin_formats():
    assert detect_format(as_rows(BuiltinSource("demos").load())[0]) in ("prompt_completion", "conversational")
    assert detect_format(as_rows(BuiltinSource("rankings").load())[0]) == "rankings"
    assert detect_format(as_rows(BuiltinSource("prompts").load())[0]) == "prompt_only"


def test_builtin_unknown_name_lists_the_names():
    with pytest.raises(DataError) as info:
        BuiltinSource("demoss")
    message = str(info.value)
    assert "demoss" in message
    for name in BUILTIN_NAMES:
        assert name in message


def test_hub_source_passes_path_name_split(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, *, split=None, revision=None, **kwargs):
        calls.append({"path": path, "name": name, "split": split, "revision": revision, **kwargs})
        return datasets.Dataset.from_list(PC_ROWS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    source = HubSource("org/demos", name="small", split="test", revision="abc123")
    assert source.describe() == "hub:org/demos/small[test]"
    loaded = source.load()
    assert as_rows(loaded) == PC_ROWS
    assert calls == [{"path": "org/demos", "name": "small", "split": "test", "revision": "abc123"}]

    calls.clear()
    HubSource("org/other").load()
    assert calls[0]["path"] == "org/other" and calls[0]["name"] is None and calls[0]["split"] == "train"


def test_hub_source_through_load_split(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.Dataset.from_list(PC_ROWS * 4))
    split = load_split(HubSource("org/demos"), ref(eval_fraction=0.0), accept=("prompt_completion",), seed=0)
    assert len(split.train) == 12
    assert "hub:org/demos[train]" in split.notes[0]


def test_hub_source_error_becomes_data_error(monkeypatch):
    import datasets

    def boom(*args, **kwargs):
        raise FileNotFoundError("Dataset 'org/missing' doesn't exist on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(DataError) as info:
        HubSource("org/missing", split="validation").load()
    message = str(info.value)
    assert message.startswith("hub:org/missing[validation]: could not load")
    assert "FileNotFoundError" in message
    assert "doesn't exist" in message
