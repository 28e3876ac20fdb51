"""Default data sources: local files, Hugging Face Hub datasets, built-in sets."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from rlhf_plug import DataError, hookimpl

BUILTIN_DIR = Path(__file__).parent / "builtin_data"
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _kind(path: Path) -> str:
    name = path.name.removesuffix(".gz")
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise DataError(f"{path}: unsupported file type; use one of {', '.join(SUFFIXES)} (optionally .gz)")


def _read_jsonl(path: Path) -> list[dict]:
    # Our own reader (not datasets' json builder) so a bad line is reported by number.
    rows = []
    with _open_text(path) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: row {number}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: row {number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def _read_json(path: Path) -> list[dict]:
    with _open_text(path) as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON at line {exc.lineno} ({exc.msg})") from None
    if isinstance(data, dict):  # {"data": [...]} or {"train": [...]}
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else data
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of objects (or JSON Lines)")
    for i, row in enumerate(data, 1):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {i}: expected an object, got {type(row).__name__}")
    return data


def read_rows(path: Path):
    """Read a local data file: JSON/JSONL as a list of row dicts (validated row by row
    before any Arrow conversion), CSV/Parquet as a ``datasets.Dataset``."""
    from datasets import Dataset

    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    kind = _kind(path)
    if kind == ".jsonl":
        return _read_jsonl(path)
    if kind == ".json":
        return _read_json(path)
    try:
        if kind == ".csv":
            import pandas as pd

            return Dataset.from_pandas(pd.read_csv(path, keep_default_na=False, dtype=str), preserve_index=False)
        return Dataset.from_parquet(str(path))
    except Exception as exc:
        raise DataError(f"{path}: could not read {kind[1:]} file: {exc}") from None


class FileSource:
    """Local JSON, JSON Lines, CSV or Parquet file (optionally gzipped)."""

    def __init__(self, path: str):
        self.path = Path(path).expanduser()

    def describe(self) -> str:
        return str(self.path)

    def load(self):
        return read_rows(self.path)


class HubSource:
    """A dataset from the Hugging Face Hub via ``datasets.load_dataset`` (online only)."""

    def __init__(self, path: str, name: str | None = None, split: str = "train", revision: str | None = None):
        self.path, self.name, self.split, self.revision = path, name, split, revision

    def describe(self) -> str:
        return f"hub:{self.path}" + (f"/{self.name}" if self.name else "") + f"[{self.split}]"

    def load(self):
        from datasets import load_dataset

        try:
            return load_dataset(self.path, self.name, split=self.split, revision=self.revision)
        except Exception as exc:
            raise DataError(f"{self.describe()}: could not load: {type(exc).__name__}: {exc}") from None


class BuiltinSource:
    """A small dataset shipped with rlhf-plug (see ``rlhf_plug_plugins/builtin_data``)."""

    def __init__(self, name: str):
        available = sorted(p.name.removesuffix(".jsonl") for p in BUILTIN_DIR.glob("*.jsonl"))
        if name not in available:
            raise DataError(f"builtin:{name}: no such built-in dataset; available: {', '.join(available)}")
        self.name = name

    def describe(self) -> str:
        return f"builtin:{self.name}"

    def load(self):
        return read_rows(BUILTIN_DIR / f"{self.name}.jsonl")


@hookimpl
def rlhf_register_data_sources(register):
    register("file", FileSource)
    register("hub", HubSource)
    register("builtin", BuiltinSource)
