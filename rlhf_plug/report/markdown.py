"""Markdown building blocks: escaped table cells, number formatting, tables, results tables."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

BEFORE, AFTER = "_before", "_after"


def is_number(value) -> bool:
    """An int or float, not a bool (JSON's true/false load as bools)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def cell(value) -> str:
    """Text safe inside a markdown table cell: ``|`` escaped, newlines as ``<br>``, HTML special characters escaped."""
    text = number(value) if value is None or is_number(value) else str(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("|", "\\|").replace("\r\n", "\n").replace("\r", "\n")
    return "<br>".join(text.split("\n")).strip() or " "


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, ending in "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def number(value) -> str:
    """Four significant digits for floats, integers as they are, ``n/a`` for missing or NaN."""
    if value is None:
        return "n/a"
    if not is_number(value):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "n/a"
    if value.is_integer() and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4g}"


def change(before, after) -> str:
    if not (is_number(before) and is_number(after)):
        return ""
    delta = after - before
    return "0" if delta == 0 else f"{'+' if delta > 0 else '-'}{number(abs(delta))}"


def table(headers: Sequence[str], rows: Iterable[Sequence], right: Sequence[int] = ()) -> str:
    """A markdown table; ``right`` lists the columns to right-align (numbers)."""
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def code(text: str) -> str:
    """Inline code, for metric and component names (backticks cannot occur in them)."""
    return f"`{text.replace('`', '')}`"


def results_tables(results: dict) -> str:
    """results.json as two tables: metrics measured before and after training side by side, then the rest."""
    pairs = [(k[: -len(BEFORE)], v, results[k[: -len(BEFORE)] + AFTER]) for k, v in results.items()
             if k.endswith(BEFORE) and k[: -len(BEFORE)] + AFTER in results]
    paired = {p[0] + BEFORE for p in pairs} | {p[0] + AFTER for p in pairs}
    singles = [(code(k), _value(v)) for k, v in results.items() if k not in paired]
    parts = []
    if pairs:
        rows = [(code(name), before, after, change(before, after)) for name, before, after in pairs]
        parts.append(table(("metric", "before training", "after training", "change"), rows, right=(1, 2, 3)))
    if singles:
        parts.append(table(("result", "value"), singles, right=(1,)))
    return "\n\n".join(parts) or "_No results recorded._"


def _value(value):
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "(none)"
    return value


def fenced(text: str, language: str = "") -> str:
    fence = "````" if "```" in text else "```"
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"
