"""Pydantic validation errors turned into one message per field, named the way users write them."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One invalid field: ``field`` is a path such as ``lines[0].qty``."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("lines", 0, "qty")`` -> ``"lines[0].qty"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def describe(err: ValidationError) -> list[FieldProblem]:
    """One problem per error, with messages that say what is expected."""
    problems = []
    for error in err.errors(include_url=False):
        # Tagged/union validators add the model name to loc; users never wrote it.
        loc = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
        path = field_path(loc)
        kind = error["type"]
        if kind == "extra_forbidden":
            message = "unknown field" if path != "(top level)" else "unknown key"
        elif kind == "missing":
            message = "missing"
        else:
            message = error["msg"].removeprefix("Value error, ")
        problems.append(FieldProblem(path, message))
    return problems
