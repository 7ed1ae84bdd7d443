"""Twilio's delivery reports: ``POST /v1/sms/twilio/status``, the ``StatusCallback`` of every SMS the
sms channel sends while ``NOTIFIER_PUBLIC_URL`` is set.

Twilio posts a form (``MessageSid``, ``MessageStatus``, ``ErrorCode``, ``To``, ...) each time the
message's state changes. The request is Twilio's only if its ``X-Twilio-Signature`` matches
(:func:`twilio_signature`: HMAC-SHA1, keyed with the auth token, of the URL Twilio posted to followed
by every form field's name and value in name order, base64); a missing or forged one gets 403 and
nothing is recorded. The state goes to the message's hash (``notifier.state.sms_status``) and to one
log line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Iterable
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from notifier.gateway.errors import ApiError, ErrorBody
from notifier.gateway.state import State
from notifier.state.sms_status import MESSAGE_ID, SmsStatuses

log = logging.getLogger("notifier.gateway.sms")

router = APIRouter(prefix="/v1", tags=["sms"], responses={403: {"model": ErrorBody}})
SIGNATURE_HEADER = "X-Twilio-Signature"


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """The ``X-Twilio-Signature`` Twilio computes for a form POST to ``url``
    (https://www.twilio.com/docs/usage/security#validating-requests)."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@router.post("/sms/twilio/status", status_code=204, response_class=Response)
async def twilio_status(request: Request, state: State) -> Response:
    """Record an SMS's delivery state as Twilio reports it (signed by Twilio; 403 otherwise)."""
    settings = state.settings
    params = parse_qsl((await request.body()).decode(errors="replace"), keep_blank_values=True)
    url = str(request.url)  # behind a proxy, Twilio signed the public address it posted to
    if settings.public_url:
        url = settings.sms_status_url() + (f"?{request.url.query}" if request.url.query else "")
    given = request.headers.get(SIGNATURE_HEADER, "")
    token = settings.sms_twilio_auth_token
    if not (token and given and hmac.compare_digest(given, twilio_signature(token, url, params))):
        raise ApiError(403, f"this request's {SIGNATURE_HEADER} is missing or does not match: only Twilio, "
                            "signing with NOTIFIER_SMS_TWILIO_AUTH_TOKEN, may post delivery reports here",
                       code="invalid_signature")
    form = dict(params)
    sid, status = form.get("MessageSid", ""), form.get("MessageStatus", "")
    if not MESSAGE_ID.fullmatch(sid) or not status:
        raise ApiError(400, "a status callback needs MessageSid and MessageStatus")
    error_code = form.get("ErrorCode", "")
    await run_in_threadpool(SmsStatuses().report, "twilio", sid, status, error_code, form.get("To", ""))
    log.info("SMS %s %s%s", sid, status, f" (error {error_code})" if error_code else "")
    return Response(status_code=204)
