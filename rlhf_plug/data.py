"""Data formats, row validation, column mapping, rankings and splits.

We take TRL's dataset formats as they are, and add one: **rankings** (a prompt
with K completions ordered best to worst), expanded into K·(K−1)/2
chosen/rejected pairs. Splits are made per prompt *before* expansion, so every
pair from one ranking lands in the same split (as InstructGPT did).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rlhf_plug.column_types import check_column_types
from rlhf_plug.errors import DataError

#: format name -> the columns that identify it (checked in this order).
FORMATS: dict[str, tuple[str, ...]] = {
    "rankings": ("prompt", "completions"),
    "preference": ("chosen", "rejected"),
    "conversational": ("messages",),
    "prompt_completion": ("prompt", "completion"),
    "language_modeling": ("text",),
    "prompt_only": ("prompt",),
}


@dataclass
class SplitData:
    """Train and (possibly empty) eval datasets, plus what happened on the way."""

    train: Any  # datasets.Dataset
    eval: Any | None
    format: str
    source: str
    notes: list[str]
    grouped_by_prompt: bool = False  # pairs of one prompt are contiguous (expanded rankings), groups in random order


def detect_format(columns: Iterable[str]) -> str | None:
    cols = set(columns)
    for name, needed in FORMATS.items():
        if set(needed) <= cols:
            return name
    return None


def apply_column_mapping(rows: list[dict], mapping: dict[str, str], source: str) -> list[dict]:
    """Rename ``mapping[canonical] = column_in_data`` for every row."""
    if not mapping:
        return rows
    present = set(rows[0]) if rows else set()
    for canonical, column in mapping.items():
        if column not in present:
            raise DataError(
                f"{source}: column '{column}' (mapped to '{canonical}' in the recipe) not found; "
                f"columns are: {', '.join(sorted(present))}"
            )
    inverse = {column: canonical for canonical, column in mapping.items()}
    return [{inverse.get(k, k): v for k, v in row.items()} for row in rows]


# --------------------------------------------------------------------------
# Row validation
# --------------------------------------------------------------------------


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value)
    )


def _text_or_messages(value: Any) -> str | None:
    if _is_text(value) or _is_messages(value):
        return None
    if isinstance(value, str):
        return "is empty"
    return f"must be a non-empty string or a list of {{role, content}} messages, got {type(value).__name__}"


def _ranking(value: Any) -> str | None:
    if not isinstance(value, list):
        return f"must be a list of completions ordered best to worst, got {type(value).__name__}"
    if len(value) < 2:
        return f"a ranking needs at least 2 completions, got {len(value)}"
    for j, item in enumerate(value):
        problem = _text_or_messages(item)
        if problem:
            return f"item {j} {problem}"
    seen: dict[str, int] = {}
    for j, item in enumerate(value):
        key = json.dumps(item, sort_keys=True)
        if key in seen:
            return f"items {seen[key]} and {j} are the same completion; a ranking orders different completions"
        seen[key] = j
    return None


def _messages(value: Any) -> str | None:
    return None if _is_messages(value) else "must be a non-empty list of {role, content} messages"


#: The roles chat templates know. Anything else (ShareGPT's ``human``/``gpt``) would be trained as it is.
ROLES = ("system", "developer", "user", "assistant", "tool")
#: ``roles: sharegpt`` on a data reference: the aliases ShareGPT-style and Gemini-style data use.
KNOWN_ROLE_ALIASES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}


def _unknown_role(value: Any) -> str | None:
    """The first message of ``value`` (a message list, or a list of them) whose role is not in :data:`ROLES`."""
    lists = value if isinstance(value, list) and value and all(_is_messages(v) for v in value) else [value]
    for messages in lists:
        if not _is_messages(messages):
            continue
        for j, message in enumerate(messages):
            if message["role"] not in ROLES:
                alias = KNOWN_ROLE_ALIASES.get(message["role"])
                hint = f" (`roles: sharegpt` on the data maps it to '{alias}')" if alias else " (map it with `roles: {...}` on the data)"
                return f"message {j} has role '{message['role']}'; roles are {', '.join(ROLES)}{hint}"
    return None


def map_roles(rows: list[dict], roles: str | dict[str, str] | None) -> tuple[list[dict], str | None]:
    """Rename message roles by ``roles`` (``"sharegpt"``: :data:`KNOWN_ROLE_ALIASES`); the rows and a note."""
    if not roles:
        return rows, None
    mapping = KNOWN_ROLE_ALIASES if roles == "sharegpt" else roles
    used: dict[str, str] = {}

    def renamed(value: Any) -> Any:
        if _is_messages(value):
            for m in value:
                if m["role"] in mapping:
                    used[m["role"]] = mapping[m["role"]]
            return [{**m, "role": mapping.get(m["role"], m["role"])} for m in value]
        if isinstance(value, list) and value and all(_is_messages(v) for v in value):
            return [renamed(v) for v in value]
        return value

    rows = [{k: renamed(v) for k, v in row.items()} for row in rows]
    shown = ", ".join(f"{a} -> {b}" for a, b in sorted(used.items())) or "none found"
    return rows, f"message roles mapped ({roles if isinstance(roles, str) else 'roles:'}): {shown}"


def _pair_problem(row: dict) -> str | None:
    """What makes a preference row no pair: the same answer twice, or an HH transcript with no answer boundary."""
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if json.dumps(chosen, sort_keys=True) == json.dumps(rejected, sort_keys=True):
        return "chosen and rejected are the same answer; a pair needs two different ones"
    if row.get("prompt") or not (isinstance(chosen, str) and isinstance(rejected, str)):
        return None
    shared = _common_prefix_length(chosen, rejected)
    if "Human:" in chosen[:shared] and chosen.rfind(ASSISTANT_MARKER, 0, shared) < 0:
        return (f"an HH-style transcript ('Human:' turns) with no '{ASSISTANT_MARKER.strip()}' before the answers "
                "differ, so the prompt cannot be told from the answer")
    return None


def _common_prefix_length(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _text(value: Any) -> str | None:
    return None if _is_text(value) else "must be a non-empty string"


ROW_CHECKS: dict[str, dict[str, Callable[[Any], str | None]]] = {
    "rankings": {"prompt": _text_or_messages, "completions": _ranking},
    "preference": {"chosen": _text_or_messages, "rejected": _text_or_messages},
    "conversational": {"messages": _messages},
    "prompt_completion": {"prompt": _text_or_messages, "completion": _text_or_messages},
    "language_modeling": {"text": _text},
    "prompt_only": {"prompt": _text_or_messages},
}


def validate_rows(rows: list[dict], fmt: str, source: str) -> None:
    """Raise :class:`DataError` naming source, row (1-based) and column of the first bad value."""
    checks = dict(ROW_CHECKS[fmt])
    if fmt == "preference" and rows and "prompt" in rows[0]:
        checks["prompt"] = _text_or_messages
    for i, row in enumerate(rows):
        for column, check in checks.items():
            problem = check(row.get(column)) or _unknown_role(row.get(column))
            if problem:
                raise DataError(f"{source}: row {i + 1}, column '{column}': {problem}")
        if fmt == "preference" and (problem := _pair_problem(row)):
            raise DataError(f"{source}: row {i + 1}: {problem}")


# --------------------------------------------------------------------------
# Pairs: the prompt they share, and conversions to other formats
# --------------------------------------------------------------------------

#: Where the last answer of an HH-style transcript starts (``\n\nHuman: … \n\nAssistant: …``).
ASSISTANT_MARKER = "\n\nAssistant:"


def split_pair(row: dict) -> tuple[Any, Any, Any]:
    """``(prompt, chosen, rejected)`` of a preference row, the prompt made explicit.

    An explicit ``prompt`` column is used as it is. Otherwise the prompt is what
    chosen and rejected share: the common messages of a conversation, or for
    text the common prefix up to and including its last ``\n\nAssistant:``
    (HH-RLHF), else up to its last whitespace (so no word is split).
    """
    chosen, rejected = row["chosen"], row["rejected"]
    if row.get("prompt"):
        return row["prompt"], chosen, rejected
    if isinstance(chosen, list) and isinstance(rejected, list):
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        return chosen[:n], chosen[n:], rejected[n:]
    if isinstance(chosen, list) or isinstance(rejected, list):
        return "", chosen, rejected
    n = _common_prefix_length(chosen, rejected)
    marker = chosen.rfind(ASSISTANT_MARKER, 0, n)
    if marker >= 0:
        n = marker + len(ASSISTANT_MARKER)
    else:
        n = max(chosen.rfind(" ", 0, n), chosen.rfind("\n", 0, n), 0)
    return chosen[:n], chosen[n:], rejected[n:]


def _extra(row: dict, used: tuple[str, ...]) -> dict:
    return {k: v for k, v in row.items() if k not in used}


def pair_with_prompt(row: dict) -> dict:
    """A preference row with its shared prompt in a ``prompt`` column (TRL's explicit-prompt form)."""
    prompt, chosen, rejected = split_pair(row)
    return {**_extra(row, ("prompt", "chosen", "rejected")), "prompt": prompt, "chosen": chosen, "rejected": rejected}


def _chosen_as_completion(row: dict) -> dict:
    prompt, chosen, _ = split_pair(row)
    return {**_extra(row, ("prompt", "chosen", "rejected")), "prompt": prompt, "completion": chosen}


def _pair_prompt(row: dict) -> dict:
    return {**_extra(row, ("prompt", "chosen", "rejected")), "prompt": split_pair(row)[0]}


def _best_as_completion(row: dict) -> dict:
    return {**_extra(row, ("completions",)), "completion": row["completions"][0]}


def _ranking_prompt(row: dict) -> dict:
    return _extra(row, ("completions",))


#: (format in the data, format a stage accepts) -> row conversion, and what the note says.
#: This is how one preference file feeds all three stages: SFT learns the chosen answers,
#: PPO samples from the prompts.
CONVERSIONS: dict[tuple[str, str], tuple[Callable[[dict], dict], str]] = {
    ("preference", "prompt_completion"): (_chosen_as_completion, "the chosen answer of each pair as the completion"),
    ("preference", "prompt_only"): (_pair_prompt, "the prompt each pair shares (up to its last assistant turn)"),
    ("rankings", "prompt_completion"): (_best_as_completion, "the best-ranked answer as the completion"),
    ("rankings", "prompt_only"): (_ranking_prompt, "the prompt of each ranking"),
}


def conversion_for(fmt: str, accept: Sequence[str]) -> tuple[str, Callable[[dict], dict], str] | None:
    """The first accepted format ``fmt`` converts to: (target format, row function, description)."""
    for target in accept:
        if (fmt, target) in CONVERSIONS:
            return (target, *CONVERSIONS[(fmt, target)])
    return None


# --------------------------------------------------------------------------
# Rankings and splits
# --------------------------------------------------------------------------


def expand_rankings(rows: Sequence[dict]) -> list[dict]:
    """Turn each ranking (best first) into all K·(K−1)/2 chosen/rejected pairs."""
    pairs = []
    for row in rows:
        completions = row["completions"]
        extra = {k: v for k, v in row.items() if k not in ("prompt", "completions")}
        for i in range(len(completions)):
            for j in range(i + 1, len(completions)):
                pairs.append({"prompt": row["prompt"], "chosen": completions[i], "rejected": completions[j], **extra})
    return pairs


def group_key(row: dict, index: int) -> str:
    """Rows sharing a prompt share a split."""
    if "chosen" in row and "rejected" in row and not row.get("prompt"):
        return repr(split_pair(row)[0])
    for column in ("prompt", "messages", "chosen", "text"):
        if column in row:
            value = row[column]
            if column in ("messages", "chosen") and isinstance(value, list):
                value = value[:-1] or value  # the conversation before the last answer
            return repr(value)
    return str(index)


def split_rows(rows: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Split by prompt group, deterministically; eval gets ``eval_fraction`` of the groups."""
    if eval_fraction <= 0:
        return rows, []
    groups: dict[str, list[dict]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(group_key(row, i), []).append(row)
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    n_eval = max(1, round(len(keys) * eval_fraction)) if len(keys) > 1 else 0
    eval_keys = set(keys[:n_eval])
    train = [r for k in keys if k not in eval_keys for r in groups[k]]
    held = [r for k in keys if k in eval_keys for r in groups[k]]
    return train, held


def prepare_rows(
    rows: list[dict],
    *,
    source: str,
    columns: dict[str, str],
    fmt: str,
    accept: Sequence[str],
    limit: int | None,
) -> tuple[list[dict], str]:
    """Map columns, detect and check the format, validate rows; return rows and format.

    The format returned may be one that :func:`convert_rows` turns into an accepted one.
    """
    if not rows:
        raise DataError(f"{source}: the dataset is empty")
    rows = apply_column_mapping(rows, columns, source)
    detected = detect_format(rows[0]) if fmt == "auto" else fmt
    if detected not in FORMATS:
        raise DataError(
            f"{source}: unrecognised columns {sorted(rows[0])}; expected one of: "
            + "; ".join(f"{name} ({', '.join(cols)})" for name, cols in FORMATS.items())
        )
    if detected not in accept and conversion_for(detected, accept) is None:
        missing = [c for c in FORMATS[accept[0]] if c not in rows[0]]
        hint = f" (missing column {', '.join(repr(c) for c in missing)})" if missing else ""
        raise DataError(
            f"{source}: data is in '{detected}' format{hint}, but this stage needs one of: {', '.join(accept)}"
        )
    missing = [c for c in FORMATS[detected] if c not in rows[0]]
    if missing:
        raise DataError(f"{source}: missing column '{missing[0]}' for format '{detected}'")
    validate_rows(rows, detected, source)
    check_column_types(rows, source)
    return (rows[:limit] if limit else rows), detected


def convert_rows(rows: list[dict], fmt: str, accept: Sequence[str]) -> tuple[list[dict], str, str | None]:
    """Rows in an accepted format: converted by :data:`CONVERSIONS` if needed; (rows, format, note or None)."""
    if fmt in accept:
        return rows, fmt, None
    target, convert, what = conversion_for(fmt, accept)
    return [convert(row) for row in rows], target, f"{fmt} rows used as {target}: {what}"


def parse_jsonl(lines: Iterable[str], source: str) -> list[dict]:
    """Rows of JSON Lines text, blank lines skipped; a bad line is a :class:`DataError` naming ``source`` and the row."""
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{source}: row {number}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{source}: row {number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def as_rows(data) -> list[dict]:
    """Rows of a ``datasets.Dataset`` or of a list of dicts, as a list of dicts."""
    return data.to_list() if hasattr(data, "to_list") else list(data)


def load_split(source_obj, ref, *, accept: Sequence[str], seed: int) -> SplitData:
    """Load a data source, validate it, split it and expand rankings.

    :param source_obj: a built data source (``describe()``, ``load()``, and
        optionally ``notes``: lines set by ``load()`` that are shown first).
    :param ref: the recipe's :class:`rlhf_plug.recipe.DataRef`.
    :param accept: formats the stage accepts; ``rankings`` is accepted wherever
        ``preference`` is.
    """
    rows, roles_note = map_roles(as_rows(source_obj.load()), getattr(ref, "roles", None))
    source = source_obj.describe()  # after load(): a source may say what it really read (a hub fallback)
    accepted = [*accept, "rankings"] if "preference" in accept else list(accept)
    rows, fmt = prepare_rows(rows, source=source, columns=ref.columns, fmt=ref.format, accept=accepted, limit=ref.limit)
    rows, fmt, converted = convert_rows(rows, fmt, accepted)
    train, held = split_rows(rows, ref.eval_fraction, seed)
    split_note = f"{len(train)} train / {len(held)} eval" if ref.eval_fraction > 0 else "all used (eval_fraction: 0, no split)"
    notes = [*getattr(source_obj, "notes", ()), f"{len(rows)} rows from {source} ({fmt}); {split_note}"]
    notes += [note for note in (roles_note, converted) if note]
    grouped = fmt == "rankings"
    if grouped:
        random.Random(seed).shuffle(train)  # group order is random even with no eval split
        train, held = expand_rankings(train), expand_rankings(held)
        notes.append(f"rankings expanded to {len(train)} train / {len(held)} eval pairs")
        fmt = "preference"
    if not train:
        raise DataError(f"{source}: no training rows left after the eval split")
    held_data = as_dataset(held, source) if held else None
    return SplitData(as_dataset(train, source), held_data, fmt, source, notes, grouped_by_prompt=grouped)


def as_dataset(rows: list[dict], source: str):
    """``datasets.Dataset.from_list``; an Arrow error (rows :func:`check_column_types` let through) names the source."""
    import pyarrow
    from datasets import Dataset

    try:
        return Dataset.from_list(rows)
    except (pyarrow.ArrowException, TypeError, ValueError) as exc:
        raise DataError(f"{source}: the rows cannot be stored as a table: {type(exc).__name__}: {exc}") from None


__all__ = [
    "ASSISTANT_MARKER",
    "FORMATS",
    "KNOWN_ROLE_ALIASES",
    "ROLES",
    "SplitData",
    "as_rows",
    "detect_format",
    "expand_rankings",
    "load_split",
    "pair_with_prompt",
    "split_pair",
    "split_rows",
    "validate_rows",
]
