"""One type per column, checked row by row before the rows become an Arrow table.

``datasets.Dataset.from_list`` needs every value of a column to have one Arrow
type. A column holding a string in one row and a list of messages in the next
(or an extra column with ``1`` here and ``"x"`` there) makes pyarrow raise an
error that names neither the file nor the row. :func:`check_column_types`
finds the first row that disagrees and says which, in Arrow's own terms: ints
and floats mix (they become floats), ``null`` fits anything, objects may have
different keys (missing ones become null), but a key's values must agree too.
"""

from __future__ import annotations

from typing import Any

from rlhf_plug.errors import DataError

#: A value's shape: None (null, fits anything), a scalar name, ("list", item shape) or ("object", {key: shape}).
Shape = Any


class _Mismatch(Exception):
    def __init__(self, had: Shape, got: Shape, where: str = ""):
        super().__init__(where)
        self.had, self.got, self.where = had, got, where


def shape_of(value: Any) -> Shape:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        item: Shape = None
        for i, element in enumerate(value):
            item = merge(item, shape_of(element), f"item {i}")
        return ("list", item)
    if isinstance(value, dict):
        return ("object", {str(k): shape_of(v) for k, v in value.items()})
    return type(value).__name__


def merge(had: Shape, got: Shape, where: str = "") -> Shape:
    """The shape that holds both, or :class:`_Mismatch` naming where inside the value they differ."""
    if had is None or had == got:
        return got if had is None else had
    if got is None:
        return had
    if isinstance(had, tuple) and isinstance(got, tuple) and had[0] == got[0]:
        if had[0] == "list":
            return ("list", merge(had[1], got[1], _join(where, "items")))
        keys = {**had[1], **got[1]}
        return ("object", {k: merge(had[1].get(k), got[1].get(k), _join(where, f"key '{k}'")) for k in keys})
    raise _Mismatch(had, got, where)


def _join(where: str, inner: str) -> str:
    return f"{where}, {inner}" if where else inner


def describe(shape: Shape) -> str:
    if shape is None:
        return "null"
    if isinstance(shape, tuple) and shape[0] == "list":
        return "a list" if shape[1] is None else f"a list of {_plural(shape[1])}"
    if isinstance(shape, tuple):
        return "an object"
    return {"string": "a string", "number": "a number", "true/false": "true/false"}.get(shape, f"a {shape}")


def _plural(shape: Shape) -> str:
    if isinstance(shape, tuple):
        return "lists" if shape[0] == "list" else "objects"
    return {"string": "strings", "number": "numbers", "true/false": "true/false values"}.get(shape, f"{shape} values")


def check_column_types(rows: list[dict], source: str) -> None:
    """Raise :class:`DataError` naming ``source``, the 1-based row and the column whose type changes."""
    shapes: dict[str, Shape] = {}
    first_row: dict[str, int] = {}
    for number, row in enumerate(rows, 1):
        for column, value in row.items():
            try:
                got = shape_of(value)
            except _Mismatch as exc:
                raise DataError(
                    f"{source}: row {number}, column '{column}': {exc.where} is {describe(exc.got)}, "
                    f"but earlier items are {describe(exc.had)}; a list must hold one type"
                ) from None
            try:
                shapes[column] = merge(shapes.get(column), got)
            except _Mismatch as exc:
                inside = f" ({exc.where})" if exc.where else ""
                raise DataError(
                    f"{source}: row {number}, column '{column}'{inside}: {describe(exc.got)} here, but "
                    f"{describe(exc.had)} in row {first_row[column]}; a column must hold one type in every row"
                ) from None
            if got is not None:
                first_row.setdefault(column, number)
