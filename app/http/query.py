"""Query-string parameters, checked: a bad value is a 400 naming the parameter."""

from __future__ import annotations

from starlette.requests import Request

from app.engine.errors import RequestError


def query_int(
    request: Request, name: str, *, default: int, low: int | None = None, high: int | None = None
) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RequestError(
            f"Invalid value for '{name}': expected an integer, got '{raw}'.",
            param=name,
            code="invalid_type",
        ) from None
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise RequestError(
            f"Invalid value for '{name}': must be {bounds}, got {value}.",
            param=name,
            code="invalid_value",
        )
    return value


def query_choice(request: Request, name: str, choices: tuple[str, ...], *, default: str) -> str:
    value = request.query_params.get(name, default)
    if value not in choices:
        allowed = ", ".join(f"'{c}'" for c in choices)
        raise RequestError(
            f"Invalid value for '{name}': '{value}'. Supported values are: {allowed}.",
            param=name,
            code="invalid_value",
        )
    return value


def query_bool(request: Request, name: str, *, default: bool) -> bool:
    value = query_choice(request, name, ("true", "false"), default="true" if default else "false")
    return value == "true"


def query_list(request: Request, name: str) -> list[str]:
    """A list parameter, in the order sent: the SDK sends `name[]=a&name[]=b`; the plain
    repeated form `name=a&name=b` is taken too."""
    return [
        value for key, value in request.query_params.multi_items() if key in (name, f"{name}[]")
    ]
