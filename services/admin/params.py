"""Parameter types shared by the admin actions, and pydantic errors as one clear message.

Every value an action passes to Postgres is bounded here, so a malformed request is a 400
naming its parameter and never reaches the database as an out-of-range integer, a NUL
byte or an unpaired surrogate (each of which Postgres or the driver would refuse).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, ValidationError

from services.admin.context import ParamError

INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no unpaired surrogates)") from None
    return value


Text = Annotated[str, Field(max_length=255), AfterValidator(_storable)]
"""A short string Postgres can store."""

LongText = Annotated[str, Field(max_length=1_000_000), AfterValidator(_storable)]
"""A long string (a JSON document) Postgres can store."""

RowId = Annotated[int, Field(gt=0, le=INT4_MAX)]
"""An id in an ``integer`` column (contacts, groups)."""

BigRowId = Annotated[int, Field(gt=0, le=INT8_MAX)]
"""An id in a ``bigint`` column (cache rows)."""


def parse(model: type[BaseModel], data: Mapping[str, Any]) -> BaseModel:
    """Validate ``data`` as ``model``; a ParamError naming the first bad parameter if not."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise param_error(error.errors(), skip=0) from None


def param_error(errors: Sequence[Mapping[str, Any]], skip: int) -> ParamError:
    """The first of pydantic's ``errors`` as a ParamError; ``skip`` drops a location prefix
    (FastAPI puts ``body`` first)."""
    first = errors[0]
    location = [part for part in first["loc"][skip:] if isinstance(part, str)]
    kind = first["type"]
    if kind == "json_invalid":
        return ParamError("the body is not valid JSON", "body")
    if not location:
        return ParamError("the body must be a JSON object of the action's parameters", "body")
    name = location[0]
    if kind == "extra_forbidden":
        return ParamError(f"{name}: unknown parameter", name)
    if kind == "missing":
        return ParamError(f"{name}: required", name)
    message = str(first["msg"]).removeprefix("Value error, ")
    return ParamError(f"{name}: {message}", name)
