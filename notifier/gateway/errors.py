"""Every answer the gateway gives for an error: one JSON shape, an HTTP status, a stable code and a
sentence that tells the caller what to do.

The table is generated from the catalogue in :mod:`notifier.errors` (each class carries its status,
code, headers and WebSocket close code), plus the framework's own errors and Redis's, which are
translated into catalogue errors first, so no error notifier raises can lack an answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from notifier.errors import (
    InvalidToken,
    NotifierError,
    RateLimited,
    StoreUnavailable,
    TooManyConnections,
    Unauthorized,
    Unavailable,
    ValidationError,
    catalogue,
)
from notifier.models import invalid_json

log = logging.getLogger(__name__)

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
          405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type",
          422: "invalid_request", 429: "too_many_connections", 503: "unavailable"}


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str
    """A stable machine-readable code, e.g. ``unauthorized`` or ``invalid_request``."""
    message: str
    """One sentence for a human: what is wrong and what to do."""
    details: list[dict[str, Any]] | None = None
    """For ``invalid_request``: each problem's location and message."""


class ApiError(Exception):
    """An answer a route decides itself (a 404 for an id it does not know); errors that can occur in
    more than one place belong in the catalogue (:mod:`notifier.errors`) instead."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.headers = headers


def error_response(status: int, message: str, code: str | None = None,
                   details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=code or _CODES.get(status, "error"), message=message, details=details)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def describe_validation(errors: Sequence[Mapping[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """FastAPI's validation errors as one readable line plus a compact list."""
    details = [_detail(e) for e in errors]
    summary = "; ".join(f"{d['loc']}: {d['message']}" if d["loc"] else d["message"] for d in details[:5])
    if len(details) > 5:
        summary += f"; and {len(details) - 5} more"
    return f"invalid request: {summary}", details


def _detail(error: Mapping[str, Any]) -> dict[str, Any]:
    if error.get("type") == "json_invalid":  # loc is ("body", position): say where the JSON breaks
        position = error.get("loc", ("body", 0))[-1]
        return {"loc": "body", "message": invalid_json(position, str(error.get("ctx", {}).get("error", "")))}
    return {"loc": ".".join(str(p) for p in _location(error.get("loc", ()))),
            "message": str(error.get("msg", "invalid")).removeprefix("Value error, ")}


def _location(loc: tuple[Any, ...] | list[Any]) -> list[Any]:
    """``("body", "timezone")`` reads better as ``timezone``; query and path names keep their prefix."""
    return list(loc[1:]) if loc and loc[0] == "body" and len(loc) > 1 else list(loc)


_DOCUMENTED = (Unauthorized, InvalidToken, ValidationError, RateLimited, TooManyConnections, Unavailable,
               StoreUnavailable)
"""The catalogue errors any API route can answer with, for its OpenAPI description."""


def _described(status: int) -> str:
    return "; ".join(f"`{cls.code}`: {cls.advice}" for cls in catalogue()
                     if cls in _DOCUMENTED and cls.status == status)


RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "`too_large`: request body larger than NOTIFIER_MAX_REQUEST_BYTES"},
    **{status: {"model": ErrorBody, "description": _described(status)}
       for status in sorted({cls.status for cls in _DOCUMENTED if cls.status is not None})},
}
"""Error responses every API route documents in the OpenAPI schema, from the catalogue."""


def answer(exc: NotifierError) -> JSONResponse | None:
    """The answer the catalogue gives ``exc``; None for an internal error (a 500: it is a bug here)."""
    if exc.status is None:
        return None
    if not exc.expose:  # the text may name a server: it goes to the log, the caller gets the advice
        log.warning("%s: %s", type(exc).__name__, exc)
    return error_response(exc.status, exc.public_message, exc.code, headers=exc.headers() or None)


def _redis_down(exc: Exception) -> JSONResponse | None:
    return answer(StoreUnavailable(str(exc)))


def _api(exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.code, headers=exc.headers)


def _validation(exc: RequestValidationError) -> JSONResponse:
    message, details = describe_validation(list(exc.errors()))
    return error_response(ValidationError.status or 422, message, ValidationError.code, details=details)


_ANSWERS: dict[type[Exception], Callable[[Any], JSONResponse | None]] = {
    NotifierError: answer,
    ApiError: _api,
    RequestValidationError: _validation,
    StarletteHTTPException: lambda e: error_response(e.status_code, str(e.detail),
                                                     headers=getattr(e, "headers", None)),
    **dict.fromkeys((redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                     redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError,
                     redis.exceptions.MasterDownError, redis.exceptions.RedisClusterException), _redis_down),
}
"""Every catalogue error answers from its own class attributes (so a new one, defined anywhere, is
answered too); the framework's errors and Redis's failures (as :class:`StoreUnavailable`) join them."""


def response_for(exc: Exception) -> JSONResponse | None:
    """The :class:`ErrorBody` response for ``exc`` (its most specific known class); None for a bug (a 500)."""
    for kind in type(exc).__mro__:
        handler = _ANSWERS.get(kind)
        if handler is not None:
            return handler(exc)
    return None


def install(app: FastAPI) -> None:
    """Register the handler that gives every known failure the :class:`ErrorBody` shape."""

    async def handle(_: Request, exc: Exception) -> JSONResponse:
        response = response_for(exc)
        if response is None:
            raise exc
        return response

    for kind in _ANSWERS:
        app.add_exception_handler(kind, handle)
