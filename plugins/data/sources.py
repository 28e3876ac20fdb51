"""Default data sources: local files, Hugging Face Hub datasets (with an offline fallback), built-in sets."""

from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path

from rlhf_plug import DataError, hookimpl
from rlhf_plug.data import parse_jsonl
from rlhf_plug.recipe import RecipePath

BUILTIN_DIR = Path(__file__).parent / "builtin_data"
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


#: What reading a damaged gzip file raises (``EOFError``: cut off; ``BadGzipFile``/``zlib.error``: corrupt).
GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def _text_lines(path: Path, unit: str = "row"):
    """The file's lines as text; bytes that are not UTF-8, or a damaged ``.gz``, are a
    :class:`DataError` naming the file and the row (``unit``: what a line is called)."""
    number = 0
    with _open_bytes(path) as fh:
        try:
            for number, raw in enumerate(fh, 1):
                yield _decode(raw, f"{path}: {unit} {number}")
        except GZIP_ERRORS as exc:
            raise DataError(f"{path}: {unit} {number + 1}: the gzip file is cut off or corrupt ({exc})") from None


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text (byte {raw[exc.start]:#04x}, byte {exc.start + 1} of the line); save the file as UTF-8") from None


def _read_text(path: Path) -> str:
    """The whole file as text, with the same errors as :func:`_text_lines` (naming the line)."""
    return "".join(_text_lines(path, "line"))


def _kind(path: Path) -> str:
    name = path.name.removesuffix(".gz")
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise DataError(f"{path}: unsupported file type; use one of {', '.join(SUFFIXES)} (optionally .gz)")


def _read_jsonl(path: Path) -> list[dict]:
    # Our own reader (not datasets' json builder) so a bad line is reported by number.
    return parse_jsonl(_text_lines(path), str(path))


def _read_json(path: Path) -> list[dict]:
    try:
        data = json.loads(_read_text(path))
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

    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a data file")
    if not path.is_file():
        raise DataError(f"{path}: data file not found (looked for {path.resolve()})")
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

    def __init__(self, path: RecipePath):
        self.path = Path(path).expanduser()

    def describe(self) -> str:
        return str(self.path)

    def load(self):
        return read_rows(self.path)


class HubSource:
    """A dataset from the Hugging Face Hub via ``datasets.load_dataset``; optionally a built-in set when offline.

    ``fallback`` names a built-in set (same columns) used when the Hub cannot be
    reached (``HF_HUB_OFFLINE=1`` without a cached copy, no network, a timeout);
    ``notes`` then says which and why. Any other failure (unknown dataset, bad
    split, ...) is still an error.
    """

    def __init__(
        self, path: str, name: str | None = None, split: str = "train", revision: str | None = None,
        data_dir: str | None = None, fallback: str | None = None,
    ):
        self.path, self.name, self.split, self.revision, self.data_dir = path, name, split, revision, data_dir
        self.fallback = BuiltinSource(fallback) if fallback else None  # a typo fails `validate` online too
        self.notes: list[str] = []
        self.used_fallback = False

    def hub_name(self) -> str:
        where = f"/{self.name}" if self.name else ""
        where += f" ({self.data_dir})" if self.data_dir else ""
        return f"hub:{self.path}{where}[{self.split}]"

    def describe(self) -> str:
        return self.fallback.describe() if self.used_fallback else self.hub_name()

    def load(self):
        from datasets import load_dataset

        self.notes, self.used_fallback = [], False
        try:
            extra = {"data_dir": self.data_dir} if self.data_dir else {}
            return load_dataset(self.path, self.name, split=self.split, revision=self.revision, **extra)
        except Exception as exc:
            if self.fallback is None or not is_connectivity_error(exc):
                raise DataError(f"{self.hub_name()}: could not load: {type(exc).__name__}: {one_line(exc)}") from None
            offline = offline_variable()
            why = f"{offline} is set and there is no cached copy" if offline else f"{type(exc).__name__}: {one_line(exc)}"
        self.notes = [f"{self.hub_name()} is not reachable ({why}); using the built-in sample {self.fallback.describe()}"]
        self.used_fallback = True
        return self.fallback.load()


#: Exception classes (by name, so neither httpx nor requests is imported) that mean "could not reach the Hub".
NETWORK_ERRORS = {"OfflineModeIsEnabled", "LocalEntryNotFoundError", "TransportError", "ConnectionError", "Timeout"}


def is_connectivity_error(exc: BaseException | None) -> bool:
    """True if ``exc``, or an exception it was raised from, says the Hub could not be reached."""
    while exc is not None:
        if isinstance(exc, (ConnectionError, TimeoutError)) or any(c.__name__ in NETWORK_ERRORS for c in type(exc).__mro__):
            return True
        exc = exc.__cause__  # only explicit `raise ... from`: a bad split found after a failed request is not offline
    return False


def offline_variable() -> str | None:
    """The environment variable that puts the Hub libraries offline, if one does."""
    on = ("1", "ON", "YES", "TRUE")
    return next((v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if os.environ.get(v, "").upper() in on), None)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class BuiltinSource:
    """A small dataset shipped with rlhf-plug (see ``rlhf_plug_plugins/data/builtin_data``)."""

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
