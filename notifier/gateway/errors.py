"""Every error the gateway answers with: one JSON shape, an HTTP status, a stable code and a sentence
that tells the caller what to do. Handlers here turn library errors into these at the boundary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from notifier.errors import ValidationError
from notifier.gateway.hub import HubUnavailable, TooManyConnections
from notifier.models import invalid_json
from notifier.producer import BrokerUnavailable
from notifier.tokens import InvalidToken

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
    """An error response raised from anywhere in a request."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.headers = headers


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": 'Bearer realm="notifier"'})


def error_response(status: int, message: str, code: str | None = None,
                   details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorBody(error=code or _CODES.get(status, "error"), message=message, details=details)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def describe_validation(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """FastAPI's validation errors as one readable line plus a compact list."""
    details = [_detail(e) for e in errors]
    summary = "; ".join(f"{d['loc']}: {d['message']}" if d["loc"] else d["message"] for d in details[:5])
    if len(details) > 5:
        summary += f"; and {len(details) - 5} more"
    return f"invalid request: {summary}", details


def _detail(error: dict[str, Any]) -> dict[str, Any]:
    if error.get("type") == "json_invalid":  # loc is ("body", position): say where the JSON breaks
        position = error.get("loc", ("body", 0))[-1]
        return {"loc": "body", "message": invalid_json(position, str(error.get("ctx", {}).get("error", "")))}
    return {"loc": ".".join(str(p) for p in _location(error.get("loc", ()))),
            "message": str(error.get("msg", "invalid")).removeprefix("Value error, ")}


def _location(loc: tuple[Any, ...] | list[Any]) -> list[Any]:
    """``("body", "timezone")`` reads better as ``timezone``; query and path names keep their prefix."""
    return list(loc[1:]) if loc and loc[0] == "body" and len(loc) > 1 else list(loc)


RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, malformed, tampered or expired credentials"},
    413: {"model": ErrorBody, "description": "Request body larger than NOTIFIER_MAX_REQUEST_BYTES"},
    429: {"model": ErrorBody, "description": "More requests than NOTIFIER_API_RATE_LIMIT allows this user; "
                                              "retry after Retry-After seconds"},
    422: {"model": ErrorBody, "description": "The request did not validate; `message` says why"},
    503: {"model": ErrorBody, "description": "Redis (or the broker) is unreachable; retry later"},
}
"""Error responses every API route documents in the OpenAPI schema."""


def _redis_down(exc: Exception) -> JSONResponse:
    log.warning("Redis unavailable: %s", exc)
    return error_response(503, "the notification store (Redis) is unreachable; retry shortly",
                          headers={"Retry-After": "2"})


def _broker_down(exc: BrokerUnavailable) -> JSONResponse:
    log.warning("broker unavailable: %s", exc)
    return error_response(503, "the message broker is unreachable, so nothing was sent; retry shortly",
                          headers={"Retry-After": "2"})


def _api(exc: ApiError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.code, headers=exc.headers)


def _validation(exc: RequestValidationError) -> JSONResponse:
    message, details = describe_validation(list(exc.errors()))
    return error_response(422, message, details=details)


_ANSWERS: dict[type[Exception], Callable[[Any], JSONResponse]] = {
    ApiError: _api,
    InvalidToken: lambda e: _api(unauthorized(str(e))),
    ValidationError: lambda e: error_response(422, str(e)),
    RequestValidationError: _validation,
    StarletteHTTPException: lambda e: error_response(e.status_code, str(e.detail),
                                                     headers=getattr(e, "headers", None)),
    TooManyConnections: lambda e: error_response(429, str(e), headers={"Retry-After": "5"}),
    HubUnavailable: lambda e: error_response(503, str(e), headers={"Retry-After": "2"}),
    BrokerUnavailable: _broker_down,
    **dict.fromkeys((redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                     redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError,
                     redis.exceptions.MasterDownError, redis.exceptions.RedisClusterException), _redis_down),
}
"""Each failure a caller can act on, and its answer; Redis or broker failures a client can only wait
out get 503 with Retry-After (the log line names the server; the answer does not)."""


def response_for(exc: Exception) -> JSONResponse | None:
    """The :class:`ErrorBody` response for ``exc`` (its most specific known class); None for a bug (a 500)."""
    for kind in type(exc).__mro__:
        answer = _ANSWERS.get(kind)
        if answer is not None:
            return answer(exc)
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
