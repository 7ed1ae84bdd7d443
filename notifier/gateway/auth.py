"""Who is calling: a user (a signed token naming one user) or a service (the server API key).

User tokens travel in ``Authorization: Bearer``. Browsers' EventSource (and WebSocket) cannot set
headers, so the two live endpoints also take ``?token=``; a URL can end up in proxy logs and browser
history, so tokens used that way should be short-lived (``notifier token USER --ttl 300``). The API
endpoints take the header only. Every handler acts on the token's user and nobody else: no endpoint
accepts a user id from the caller.
"""

from __future__ import annotations

import hmac
import uuid
from typing import Annotated

from fastapi import Depends, Header
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from notifier import tokens
from notifier.config import get_settings
from notifier.errors import InvalidToken, RateLimited, Unauthorized
from notifier.gateway.metrics import AUTH_FAILURES
from notifier.state.ratelimit import RateLimiter
from notifier.tokens import Claims

_bearer = HTTPBearer(auto_error=False, description="A user token from `notifier token USER_ID`")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                               description="The server API key (NOTIFIER_API_KEY)")


def bearer_token(authorization: str | None) -> str | None:
    """The token from an ``Authorization: Bearer …`` header value, if any."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        AUTH_FAILURES.labels("bad_header").inc()
        raise InvalidToken("Authorization header must be 'Bearer <token>'")
    return value.strip()


def verify_token(token: str | None) -> Claims:
    """Claims of a valid user token; 401 (as :class:`InvalidToken`) otherwise."""
    if not token:
        AUTH_FAILURES.labels("missing_token").inc()
        raise InvalidToken("a user token is required: 'Authorization: Bearer <token>'")
    try:
        return tokens.verify(token)
    except InvalidToken:
        AUTH_FAILURES.labels("invalid_token").inc()
        raise


def user_claims(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                authorization: Annotated[str | None, Header(include_in_schema=False)] = None) -> Claims:
    """API endpoints: the caller's token from the Authorization header."""
    return verify_token(bearer_token(authorization) if credentials is None else credentials.credentials)


def live_claims(request: HTTPConnection) -> Claims:
    """The live endpoints: the Authorization header, or ``?token=`` where headers are impossible."""
    header = bearer_token(request.headers.get("authorization"))
    return verify_token(header or request.query_params.get("token"))


def current_user(claims: Annotated[Claims, Depends(user_claims)]) -> str:
    """The token's user, once they are under ``NOTIFIER_API_RATE_LIMIT`` (429 otherwise)."""
    limit, window = get_settings().api_limit
    if not RateLimiter(limits={"api": (limit, window)}).allow(claims.user_id, uuid.uuid4().hex, ["api"])["api"]:
        raise RateLimited(f"more than {limit} API requests in {window} s; slow down and retry", window)
    return claims.user_id


def require_service(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                    api_key: Annotated[str | None, Depends(_api_key_header)]) -> None:
    """Endpoints for other services: the server API key, never a user token."""
    configured = get_settings().api_key
    offered = api_key or (credentials.credentials if credentials else None)
    if not configured:
        raise Unauthorized("this gateway has no NOTIFIER_API_KEY set, so service endpoints are disabled")
    if not offered:
        AUTH_FAILURES.labels("missing_api_key").inc()
        raise Unauthorized("the server API key is required: 'Authorization: Bearer <key>' or 'X-API-Key'")
    if not hmac.compare_digest(offered.encode(), configured.encode()):
        AUTH_FAILURES.labels("invalid_api_key").inc()
        raise Unauthorized("invalid API key")


UserId = Annotated[str, Depends(current_user)]
