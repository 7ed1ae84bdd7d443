"""Firebase Cloud Messaging (HTTP v1): Android and web devices with an FCM token.

google-auth provides the service-account credentials and an ``AuthorizedSession`` that fetches the
OAuth access token, renews it when it expires and once more on a 401. Both that session and the one
it fetches tokens with trust the system's CAs plus ``NOTIFIER_CA_FILE`` (``push.https_session``) and
never retry: 429/5xx become ``RetryableError(retry_after=...)`` (Celery owns the backoff), and the
FCM error JSON decides whether a 400/404 means a dead token (prune it) or a rejected payload
(dead-letter it). (pyfcm was used before; its send path retries and sleeps inside the call, and its
token request could not be given a CA.)
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import requests
from google.auth import exceptions as google_errors
from google.auth.transport.requests import AuthorizedSession, Request
from google.oauth2 import service_account

from notifier.channels.base import Delivery, OnOutcome, Outcome
from notifier.channels.push import (
    PushChannel,
    https_session,
    json_size,
    parse_retry_after,
    remaining_ttl,
)
from notifier.channels.targets import send_each
from notifier.config import Settings, get_settings
from notifier.errors import DeliveryError, InvalidTarget, PermanentError, RetryableError
from notifier.models import utcnow
from notifier.per_process import PerProcess
from notifier.state.devices import Device
from notifier.textlimits import fit_title_body

log = logging.getLogger("notifier.channels.fcm")

MAX_PAYLOAD = 4096
"""FCM's limit for a message's ``data`` plus ``notification`` (bytes, counted here as JSON)."""
_TOKEN = re.compile(r"[A-Za-z0-9_:.\-]{16,4096}")
RESERVED_DATA_KEYS = frozenset({"from", "notification", "message_type"})
RESERVED_DATA_PREFIXES = ("google", "gcm")
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_CREDENTIALS_HINT = "check NOTIFIER_FCM_CREDENTIALS (the Firebase service-account JSON)"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


@dataclass
class _Client:
    """This process's authorized session, and where its messages go."""

    session: AuthorizedSession
    url: str
    project_id: str


class FCMChannel(PushChannel):
    name = "fcm"
    max_payload_bytes = MAX_PAYLOAD

    def __init__(self, settings: Settings | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings or get_settings()
        self._client = PerProcess(self._new_client)
        """One per process: a forked worker child opens its own connections."""

    @classmethod
    def check_token(cls, token: str) -> None:
        if not _TOKEN.fullmatch(token):
            raise ValueError("an FCM registration token is 16 to 4096 characters of [A-Za-z0-9_:.-]")

    # Mapping ------------------------------------------------------------------------------------
    def build_payload(self, delivery: Delivery, now: dt.datetime | None = None) -> dict[str, Any]:
        """The FCM v1 ``message`` without its ``token``: notification, string data, Android and web
        options. ``data`` is the notification's data with non-strings as JSON (FCM takes strings
        only), plus ``notification_id``, ``notification_type`` and ``action_url``, which win over
        data keys of the same name. Raises ``PermanentError`` for a reserved data key (FCM would
        refuse it). A title and body too long for :data:`MAX_PAYLOAD` are cut on a grapheme
        boundary (body first); data too big is left to :meth:`check_payload` to refuse."""
        n = delivery.notification
        data = {key: value if isinstance(value, str) else orjson.dumps(value).decode()
                for key, value in n.data.items()}
        for key in data:
            if key in RESERVED_DATA_KEYS or key.startswith(RESERVED_DATA_PREFIXES):
                raise PermanentError(f"data key {key!r} is reserved by FCM; rename it")
        data.update({"notification_id": n.id, "notification_type": n.type})
        if n.action_url:
            data["action_url"] = n.action_url
        title, body = fit_title_body(n.title, n.body, MAX_PAYLOAD,
                                     lambda t, b: json_size({"notification": _alert(t, b), "data": data}))
        notification = _alert(title, body)
        ttl = remaining_ttl(n, now)
        urgent = n.priority != "normal"
        android: dict[str, Any] = {
            "priority": "HIGH" if urgent else "NORMAL",
            "ttl": f"{ttl}s",
            "notification": {
                "tag": n.collapse_key or n.id,
                "notification_priority": {"normal": "PRIORITY_DEFAULT", "high": "PRIORITY_HIGH",
                                          "critical": "PRIORITY_MAX"}[n.priority],
            },
        }
        webpush: dict[str, Any] = {
            "headers": {"TTL": str(ttl), "Urgency": "high" if urgent else "normal"},
            "notification": {"title": title, "body": body, "tag": n.collapse_key or n.id},
        }
        if n.collapse_key:
            android["collapse_key"] = n.collapse_key
        if n.action_url and n.action_url.startswith("https://"):
            webpush["fcm_options"] = {"link": n.action_url}
        return {"notification": notification, "data": data, "android": android, "webpush": webpush}

    def payload_size(self, payload: dict[str, Any]) -> int:
        """What FCM counts: the ``notification`` and ``data`` parts, as JSON."""
        return json_size({"notification": payload["notification"], "data": payload["data"]})

    # Sending ------------------------------------------------------------------------------------
    def send_to_devices(self, items: Sequence[tuple[Delivery, Device]],
                        on_outcome: OnOutcome | None = None) -> list[Outcome]:
        try:
            client = self._client.get()
        except DeliveryError as exc:
            return [Outcome(d, exc) for d, _ in items]
        now = utcnow()

        def push(d: Delivery, device: Device) -> dict[str, Any]:
            return {"name": self._post(client, {**self.build_payload(d, now), "token": device.token})}

        return send_each(items, push, on_outcome, id_field="name")

    def _post(self, client: _Client, message: dict[str, Any]) -> str:
        endpoint = self.settings.fcm_endpoint
        try:
            response = client.session.post(client.url, data=orjson.dumps({"message": message}),
                                           headers={"Content-Type": "application/json"},
                                           timeout=self.settings.push_timeout_seconds)
        except google_errors.GoogleAuthError as exc:
            raise _credentials_error(exc) from None
        except requests.exceptions.SSLError as exc:
            raise PermanentError(f"TLS with {endpoint} failed ({exc}): check NOTIFIER_FCM_ENDPOINT and "
                                 "NOTIFIER_CA_FILE") from None
        except requests.RequestException as exc:
            raise RetryableError(f"FCM unreachable at {endpoint}: {exc}") from None
        return self._result(client, response)

    def _result(self, client: _Client, response: requests.Response) -> str:
        status = response.status_code
        if status == 200:
            try:
                return str(response.json().get("name", ""))
            except ValueError:
                return ""
        error = _error_json(response)
        code, status_name, message = error["code"], error["status"], error["message"]
        what = f"FCM answered {status} {code or status_name}: {message}"
        if status == 429 or status >= 500:
            raise RetryableError(what, retry_after=parse_retry_after(response.headers.get("Retry-After")))
        if code == "UNREGISTERED" or (status == 400 and error["token_field"]):
            raise InvalidTarget(what)
        if status == 401:
            raise PermanentError(f"{what}; FCM refused the access token: {_CREDENTIALS_HINT}")
        if code == "SENDER_ID_MISMATCH":
            raise PermanentError(f"{what}; the token belongs to another Firebase project than "
                                 f"{client.project_id}: check NOTIFIER_FCM_CREDENTIALS and NOTIFIER_FCM_PROJECT_ID")
        if status in (403, 404):
            raise PermanentError(f"{what}; cannot send for project {client.project_id!r}: check "
                                 "NOTIFIER_FCM_PROJECT_ID and the service account's permissions "
                                 "(NOTIFIER_FCM_CREDENTIALS)")
        raise PermanentError(f"{what}; the message was rejected")

    def _new_client(self) -> _Client:
        s = self.settings
        if not s.fcm_credentials:
            raise PermanentError("FCM is not configured: set NOTIFIER_FCM_CREDENTIALS to the Firebase "
                                 "service-account JSON file")
        try:
            with open(s.fcm_credentials, "rb") as f:
                account = orjson.loads(f.read())
        except OSError as exc:
            raise PermanentError(f"cannot read NOTIFIER_FCM_CREDENTIALS {s.fcm_credentials!r}: "
                                 f"{exc.strerror}") from None
        except orjson.JSONDecodeError:
            raise PermanentError(f"NOTIFIER_FCM_CREDENTIALS {s.fcm_credentials!r} is not JSON; download the "
                                 "service-account key from the Firebase console") from None
        if not isinstance(account, dict) or account.get("type") != "service_account":
            raise PermanentError(f"NOTIFIER_FCM_CREDENTIALS {s.fcm_credentials!r} is not a service-account "
                                 "key (its \"type\" must be \"service_account\")")
        project_id = s.fcm_project_id or str(account.get("project_id") or "")
        if not project_id:
            raise PermanentError("no Firebase project id: set NOTIFIER_FCM_PROJECT_ID or use a service-account "
                                 "JSON with project_id")
        try:
            credentials = service_account.Credentials.from_service_account_info(account, scopes=[SCOPE])
        except (ValueError, KeyError) as exc:
            raise PermanentError(f"NOTIFIER_FCM_CREDENTIALS {s.fcm_credentials!r} is not a usable "
                                 f"service-account key ({exc})") from None
        session = AuthorizedSession(credentials, auth_request=Request(https_session(s.ca_file)))
        https_session(s.ca_file, session)  # the sends verify like the token requests
        url = f"{s.fcm_endpoint.rstrip('/')}/v1/projects/{project_id}/messages:send"
        return _Client(session, url, project_id)

    def close(self) -> None:
        self._client.reset(lambda client: client.session.close())


def _credentials_error(exc: google_errors.GoogleAuthError) -> DeliveryError:
    """A failed access-token request: the token endpoint unreachable (retry), its TLS refused, or the
    credentials refused (google-auth's message says which, e.g. ``invalid_grant``)."""
    detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    if isinstance(exc.__cause__, requests.exceptions.SSLError) or isinstance(exc.__context__,
                                                                             requests.exceptions.SSLError):
        return PermanentError(f"TLS with the FCM token endpoint failed ({detail}): check NOTIFIER_CA_FILE and "
                              "the token_uri in NOTIFIER_FCM_CREDENTIALS")
    if isinstance(exc, google_errors.TransportError) or getattr(exc, "retryable", False):
        return RetryableError(f"cannot get an FCM access token right now: {detail}")
    return PermanentError(f"cannot get an FCM access token ({detail}): {_CREDENTIALS_HINT}")


def _error_json(response: requests.Response) -> dict[str, Any]:
    """The parts of an FCM error body that decide what to do (all empty when it is not FCM JSON)."""
    found: dict[str, Any] = {"code": "", "status": "", "message": response.text[:200], "token_field": False}
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        return found
    if not isinstance(error, dict):
        return found
    found["status"] = str(error.get("status", ""))
    found["message"] = str(error.get("message", ""))[:300]
    for detail in error.get("details", []) if isinstance(error.get("details"), list) else []:
        if not isinstance(detail, dict):
            continue
        if detail.get("@type") == _FCM_ERROR:
            found["code"] = str(detail.get("errorCode", ""))
        elif detail.get("@type") == _BAD_REQUEST:
            fields = [v.get("field", "") for v in detail.get("fieldViolations", []) if isinstance(v, dict)]
            found["token_field"] = "message.token" in fields
    found["code"] = found["code"] or found["status"]
    if not found["token_field"]:
        found["token_field"] = "registration token" in found["message"].lower()
    return found


def _alert(title: str, body: str) -> dict[str, str]:
    return {"title": title, **({"body": body} if body else {})}
