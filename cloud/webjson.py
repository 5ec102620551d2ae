"""JSON bodies of the domain's HQ endpoints: validated with pydantic, errors naming the field.

A 422 answers ``{"error": "invalid", "message": text, "fields": [{"field", "message"}]}``;
``field`` is a path such as ``rule.any[0]``. Other errors use :func:`cloud.auth.json_error`.

Exceptions::

    ValueError
     └── InvalidField   a value is well-formed but refers to nothing or breaks a rule
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec
from aiohttp import web
from pydantic import BaseModel, ValidationError

from cloud import auth

M = TypeVar("M", bound=BaseModel)

# Ids of members, catalogue items, staff, segments, offers: they travel in URL paths.
ID_PATTERN = r"^[A-Za-z0-9_.:@+-]+$"
_ID = re.compile(ID_PATTERN)


class InvalidField(ValueError):
    """A field whose value the domain refuses, e.g. a home_store that does not exist."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_id(field: str, value: str, max_length: int = 64) -> None:
    """InvalidField unless value is 1 to max_length of ``A-Z a-z 0-9 _ . : @ + -``."""
    if len(value) > max_length or not _ID.fullmatch(value):
        raise InvalidField(field, f"1-{max_length} characters of A-Z a-z 0-9 _ . : @ + -")


def unprocessable(fields: list[tuple[str, str]]) -> web.HTTPException:
    """A 422 naming each (field, message)."""
    body = {
        "error": "invalid",
        "message": "; ".join(f"{f}: {m}" for f, m in fields),
        "fields": [{"field": f, "message": m} for f, m in fields],
    }
    return web.HTTPUnprocessableEntity(
        text=msgspec.json.encode(body).decode("utf-8"), content_type="application/json"
    )


def invalid_field(err: InvalidField) -> web.HTTPException:
    """The 422 for a refused field."""
    return unprocessable([(err.field, err.message)])


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("rule", "any", 0)`` -> ``"rule.any[0]"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def problems(err: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[tuple[str, str]]:
    """(field, message) for each error, worded for people who wrote the JSON."""
    found = []
    for error in err.errors(include_url=False):
        # Tagged/union validators add the model name to loc; users never wrote it.
        loc = prefix + tuple(p for p in error["loc"] if not str(p).startswith("function-"))
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "missing"
        else:
            message = error["msg"].removeprefix("Value error, ")
        found.append((field_path(loc), message))
    return found


def validate(model: type[M], data: Any) -> M:
    """data as model, or a 422 naming every invalid field."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise unprocessable(problems(err)) from err


async def read_model(request: web.Request, model: type[M]) -> M:
    """The request's JSON body (gzip allowed) as model; 400 if not JSON, 422 if invalid."""
    return validate(model, await auth.read_json(request))


async def require_hq(request: web.Request) -> auth.User:
    """The caller, who must hold a head-office token (403 otherwise)."""
    user = await auth.require_user(request)
    if user.role != "hq":
        raise auth.json_error(403, "forbidden", "this needs a head-office (hq) token")
    return user
