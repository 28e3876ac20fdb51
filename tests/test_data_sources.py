"""The default data sources: local files, built-in sets and the Hub."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from helpers import write_jsonl
from rlhf_plug_plugins.data.sources import (
    BUILTIN_DIR,
    BuiltinSource,
    FileSource,
    HubSource,
)

from rlhf_plug.data import (
    FORMATS,
    as_rows,
    detect_format,
    load_split,
    prepare_rows,
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
