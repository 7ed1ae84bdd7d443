"""Signed, expiring user tokens: the only way a browser or app proves which user it is.

A token is a standard HS256 JWT (``header.payload.signature``, base64url) signed with
``NOTIFIER_SECRET_KEY``, so a service in any language can mint one with its own JWT library. Claims:
``sub`` (the user id), ``aud`` (``"notifier"``, so a JWT made for another system is never accepted
here), ``iat`` and ``exp`` (Unix seconds). Only ``alg: HS256`` is accepted (never ``none``), the
signature is compared in constant time, and an expired token is refused.

Unsubscribe tokens (:func:`issue_unsubscribe`) are JWTs signed the same way for another audience,
``"notifier-unsubscribe"``, with ``typ`` (the notification type) and ``ch`` (the channel) besides
``sub``: one never passes for the other, so an email's link cannot log anyone in and a login token
cannot unsubscribe. They carry no ``exp``: RFC 8058 links are followed months after the email was
sent, and all they can do is turn one type's email off, once more. Changing ``NOTIFIER_SECRET_KEY``
ends every one of them (and every login token).

Without a secret key the gateway refuses to start, unless ``NOTIFIER_DEV_MODE`` is on: then it signs
with a random key made for this process (tokens die with it, and ``notifier token`` cannot make them;
``notifier dev`` instead sets a key and shares it with ``notifier token``, see ``notifier.devstack``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson

from notifier.config import get_settings
from notifier.errors import ConfigError, InvalidLink, InvalidToken, ValidationError
from notifier.models import SLUG, check_user_id

AUDIENCE = "notifier"
UNSUBSCRIBE_AUDIENCE = "notifier-unsubscribe"
MIN_KEY_LENGTH = 32
"""Shorter HMAC keys are guessable offline from any token; 32 random characters are not."""
MAX_TOKEN_LENGTH = 4096
MAX_TTL = 366 * 86400
_HEADER = {"alg": "HS256", "typ": "JWT"}

log = logging.getLogger(__name__)
_dev_key: bytes | None = None
_dev_lock = threading.Lock()


@dataclass(frozen=True)
class Claims:
    user_id: str
    expires_at: int
    issued_at: int


@dataclass(frozen=True)
class Unsubscribe:
    """What an unsubscribe link stops: ``channel`` for notifications of ``type`` to ``user_id``."""

    user_id: str
    type: str
    channel: str


def signing_key(allow_dev: bool = True) -> bytes:
    """The HMAC key from ``NOTIFIER_SECRET_KEY``; in dev mode (and ``allow_dev``) a random one."""
    settings = get_settings()
    if settings.secret_key:
        if len(settings.secret_key) < MIN_KEY_LENGTH:
            raise ConfigError(
                f"NOTIFIER_SECRET_KEY is {len(settings.secret_key)} characters; use at least "
                f"{MIN_KEY_LENGTH} random ones (python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return settings.secret_key.encode()
    if settings.dev_mode and allow_dev:
        return _random_dev_key()
    raise ConfigError(
        "NOTIFIER_SECRET_KEY is not set: tokens cannot be signed or checked. Set it to at least "
        f"{MIN_KEY_LENGTH} random characters"
        + (" (or NOTIFIER_DEV_MODE=1 for a throwaway per-process key)" if allow_dev else ""))


def _random_dev_key() -> bytes:
    global _dev_key
    with _dev_lock:
        if _dev_key is None:
            _dev_key = secrets.token_bytes(32)
            log.warning("NOTIFIER_DEV_MODE: signing tokens with a random per-process key; tokens stop "
                        "working when this process exits. Set NOTIFIER_SECRET_KEY outside development.")
        return _dev_key


def issue(user_id: str, ttl: int | None = None, *, key: bytes | None = None,
          now: float | None = None) -> str:
    """A token for ``user_id`` valid for ``ttl`` seconds (default ``NOTIFIER_TOKEN_TTL_SECONDS``)."""
    check_user_id(user_id)
    ttl = get_settings().token_ttl_seconds if ttl is None else ttl
    if not isinstance(ttl, int) or not 1 <= ttl <= MAX_TTL:
        raise ValidationError(f"token ttl must be between 1 and {MAX_TTL} seconds, not {ttl!r}")
    issued = int(time.time() if now is None else now)
    return _signed({"sub": user_id, "aud": AUDIENCE, "iat": issued, "exp": issued + ttl}, key or signing_key())


def issue_unsubscribe(user_id: str, notification_type: str, channel: str = "email", *,
                      key: bytes | None = None, now: float | None = None) -> str:
    """A token for an unsubscribe link: ``channel`` off for ``notification_type`` (no expiry)."""
    check_user_id(user_id)
    if not re.fullmatch(SLUG, notification_type) or not re.fullmatch(SLUG, channel):
        raise ValidationError(f"cannot sign an unsubscribe link for type {notification_type!r}, channel {channel!r}")
    payload = {"sub": user_id, "aud": UNSUBSCRIBE_AUDIENCE, "typ": notification_type, "ch": channel,
               "iat": int(time.time() if now is None else now)}
    return _signed(payload, key or signing_key(allow_dev=False))


def verify_unsubscribe(token: str, *, key: bytes | None = None) -> Unsubscribe:
    """What a valid unsubscribe token stops, or :class:`InvalidLink` saying what is wrong with it."""
    try:
        claims = _checked(token, key or signing_key(allow_dev=False))
    except InvalidToken as exc:
        raise InvalidLink(f"this unsubscribe link is not valid ({exc})") from None
    if claims.get("aud") != UNSUBSCRIBE_AUDIENCE:
        raise InvalidLink("this is not an unsubscribe link (the token is for another purpose)")
    user_id, kind, channel = claims.get("sub"), claims.get("typ"), claims.get("ch")
    if not isinstance(kind, str) or not re.fullmatch(SLUG, kind) or not isinstance(channel, str):
        raise InvalidLink("this unsubscribe link names no notification type or channel")
    try:
        return Unsubscribe(check_user_id(user_id), kind, channel)
    except ValidationError:
        raise InvalidLink("this unsubscribe link names no valid user") from None


def _signed(payload: dict[str, Any], key: bytes) -> str:
    signing_input = _b64(orjson.dumps(_HEADER)) + "." + _b64(orjson.dumps(payload))
    return signing_input + "." + _b64(_sign(signing_input, key))


def _checked(token: str, key: bytes) -> dict[str, Any]:
    """The claims of a well-formed token with a good HS256 signature (purpose not yet checked)."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("missing or oversized token")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("malformed token: expected header.payload.signature")
    header = _json_part(parts[0], "header")
    if header.get("alg") != "HS256":
        raise InvalidToken("unsupported token algorithm: only HS256 is accepted")
    expected = _sign(parts[0] + "." + parts[1], key)
    if not hmac.compare_digest(expected, _unb64(parts[2], "signature")):
        raise InvalidToken("bad token signature")
    return _json_part(parts[1], "payload")


def verify(token: str, *, key: bytes | None = None, now: float | None = None) -> Claims:
    """The claims of a valid token, or :class:`InvalidToken` saying what is wrong with it."""
    claims = _checked(token, key or signing_key())
    if claims.get("aud") == UNSUBSCRIBE_AUDIENCE:
        raise InvalidToken("this is an unsubscribe link's token, not a user token")
    current = time.time() if now is None else now
    exp, iat = claims.get("exp"), claims.get("iat", 0)
    if not isinstance(exp, int) or not isinstance(iat, int):
        raise InvalidToken("token claims exp and iat must be integers")
    if current >= exp:
        raise InvalidToken("token expired")
    nbf = claims.get("nbf")
    if nbf is not None and (not isinstance(nbf, int) or current < nbf):
        raise InvalidToken("token not valid yet")
    aud = claims.get("aud")
    if aud != AUDIENCE and not (isinstance(aud, list) and AUDIENCE in aud):
        raise InvalidToken(f"token audience must be {AUDIENCE!r}")
    try:
        user_id = check_user_id(claims.get("sub"))
    except ValidationError:
        raise InvalidToken("token has no valid subject (user id)") from None
    return Claims(user_id=user_id, expires_at=exp, issued_at=iat)


def _sign(signing_input: str, key: bytes) -> bytes:
    return hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(part: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken(f"malformed token {what}") from None


def _json_part(part: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(_unb64(part, what))
    except orjson.JSONDecodeError:
        raise InvalidToken(f"malformed token {what}") from None
    if not isinstance(value, dict):
        raise InvalidToken(f"malformed token {what}")
    return value
