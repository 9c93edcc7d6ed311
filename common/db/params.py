"""Bulk statement parameters: rows travel as one JSON parameter that the SQL expands with
``jsonb_to_recordset``, so a statement's text stays the same whatever the number of rows."""

from __future__ import annotations

import orjson


def json_rows(rows: object) -> str:
    """Rows (dataclasses or dicts) as one JSON parameter."""
    return orjson.dumps(rows).decode()
