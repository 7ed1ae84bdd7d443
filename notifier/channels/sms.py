"""SMS through Twilio's Messages API or Vonage's SMS API (``NOTIFIER_SMS_PROVIDER``), over plain HTTPS.

The recipient is the phone number in the user's preferences (``Preferences.phone``, E.164, see
``notifier/phones.py``); users without one are skipped (``no_address``). The text is the template's
SMS rendering (``sms/`` in the templates folder) or the notification's title and body, cut on a
grapheme to ``NOTIFIER_SMS_MAX_SEGMENTS`` parts (:func:`fit_segments`).

Each provider is a small class with two pure functions: :meth:`Provider.request` (what is posted) and
:meth:`Provider.answer` (what the provider's answer means on the error tree). 429, throttling, 5xx
and unreachable providers retry (honouring ``Retry-After``); a number the provider says is invalid or
not a mobile is ``InvalidTarget``: :meth:`SMS.prune` removes it from the user's preferences and notes
why (``phone_invalid``), so the next send is skipped. A recipient who replied STOP is ``OptedOut``:
SMS is turned off in their preferences, with the reason (``channel_off_reasons``). Anything else the
provider refuses is dead-lettered. Twilio reports each message's later fate to the gateway
(``StatusCallback``, when ``NOTIFIER_PUBLIC_URL`` is set; ``notifier/gateway/sms_status.py``).
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
import redis
import requests

from notifier.channels.base import Channel, Delivery, OnOutcome, Outcome, reported
from notifier.channels.push import https_session, parse_retry_after
from notifier.config import Settings, get_settings
from notifier.errors import DeliveryError, InvalidTarget, OptedOut, PermanentError, RetryableError
from notifier.models import Preferences
from notifier.per_process import PerProcess
from notifier.state.preferences import PreferenceStore
from notifier.state.sms_status import MESSAGE_ID, SmsStatuses
from notifier.textlimits import ELLIPSIS, sms_length, truncate

log = logging.getLogger("notifier.channels.sms")

GSM_ELLIPSIS = "..."
"""What a cut GSM-7 text ends with: ``…`` is not in the GSM alphabet and would make it UCS-2."""
TWILIO_INVALID_NUMBER = {21211: "not a valid phone number", 21614: "not a mobile number"}
TWILIO_OPTED_OUT = 21610
TWILIO_TOO_MANY_REQUESTS = 20429
TWILIO_AUTHENTICATE = 20003


@dataclass(frozen=True)
class Sms:
    """One text message as built for a delivery."""

    to: str
    """E.164, ``+`` included."""
    text: str
    encoding: str
    """``GSM-7`` or ``UCS-2`` (:func:`notifier.textlimits.sms_length`)."""
    segments: int
    reference: str
    """The notification id, for the provider's own reference field where it has one."""


@dataclass(frozen=True)
class HttpRequest:
    """A form POST to a provider."""

    url: str
    form: dict[str, str]
    auth: tuple[str, str] | None = None


def fit_segments(text: str, max_segments: int) -> str:
    """``text`` if it fits in ``max_segments`` SMS parts; else its longest prefix of whole graphemes
    that fits with an ellipsis (``...`` for a GSM-7 text, keeping it GSM-7; ``…`` for UCS-2)."""
    if sms_length(text).segments <= max_segments:
        return text
    if sms_length(text).encoding == "GSM-7":
        cut = truncate(text, max_segments, lambda t: sms_length(t.replace(ELLIPSIS, GSM_ELLIPSIS)).segments)
        return cut.removesuffix(ELLIPSIS) + GSM_ELLIPSIS if cut else cut
    return truncate(text, max_segments, lambda t: sms_length(t).segments)


class Provider(ABC):
    """One SMS provider: its request and the meaning of its answers."""

    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def check(self) -> None:
        """Raise ``PermanentError`` naming the setting that is missing."""

    @abstractmethod
    def request(self, sms: Sms) -> HttpRequest:
        """What is posted for ``sms`` (pure)."""

    @abstractmethod
    def answer(self, status: int, headers: Mapping[str, str], body: bytes) -> str:
        """The provider's message id for an accepted message, or the ``DeliveryError`` its answer means
        (pure)."""


class Twilio(Provider):
    """Twilio's Messages API: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, basic auth
    with the Account SID and auth token; 201 with the message resource, or an error JSON with
    Twilio's numeric ``code`` (https://www.twilio.com/docs/api/errors)."""

    name = "twilio"

    def check(self) -> None:
        s = self.settings
        if not (s.sms_twilio_account_sid and s.sms_twilio_auth_token):
            raise PermanentError("Twilio is not configured: set NOTIFIER_SMS_TWILIO_ACCOUNT_SID and "
                                 "NOTIFIER_SMS_TWILIO_AUTH_TOKEN")
        if not (s.sms_from or s.sms_twilio_messaging_service_sid):
            raise PermanentError("no SMS sender: set NOTIFIER_SMS_FROM (a Twilio number) or "
                                 "NOTIFIER_SMS_TWILIO_MESSAGING_SERVICE_SID")

    def request(self, sms: Sms) -> HttpRequest:
        s = self.settings
        form = {"To": sms.to, "Body": sms.text}
        if s.sms_twilio_messaging_service_sid:
            form["MessagingServiceSid"] = s.sms_twilio_messaging_service_sid
        else:
            form["From"] = s.sms_from
        if s.public_url:
            form["StatusCallback"] = s.sms_status_url()
        url = f"{s.sms_twilio_base_url}/2010-04-01/Accounts/{s.sms_twilio_account_sid}/Messages.json"
        return HttpRequest(url, form, (s.sms_twilio_account_sid, s.sms_twilio_auth_token))

    def answer(self, status: int, headers: Mapping[str, str], body: bytes) -> str:
        found = _json(body)
        if 200 <= status < 300:
            sid = str(found.get("sid", ""))
            if not MESSAGE_ID.fullmatch(sid):
                raise PermanentError(f"Twilio answered {status} without a message sid: {body[:200]!r}")
            return sid
        code = found.get("code")
        what = f"Twilio answered {status} (error {code}): {str(found.get('message', body[:200]))[:300]}"
        if status == 429 or code == TWILIO_TOO_MANY_REQUESTS:
            raise RetryableError(what, retry_after=parse_retry_after(headers.get("Retry-After")))
        if status >= 500:
            raise RetryableError(what, retry_after=parse_retry_after(headers.get("Retry-After")))
        if code in TWILIO_INVALID_NUMBER:
            raise InvalidTarget(f"{what}; the number is {TWILIO_INVALID_NUMBER[code]}")
        if code == TWILIO_OPTED_OUT:
            raise OptedOut(f"{what}; the recipient replied STOP (Twilio error {TWILIO_OPTED_OUT})")
        if status == 401 or code == TWILIO_AUTHENTICATE:
            raise PermanentError(f"{what}; check NOTIFIER_SMS_TWILIO_ACCOUNT_SID and NOTIFIER_SMS_TWILIO_AUTH_TOKEN")
        raise PermanentError(f"{what}; the message was refused")


VONAGE_STATUS: dict[str, str] = {
    "1": "throttled", "2": "missing parameters", "3": "invalid parameters", "4": "invalid credentials",
    "5": "internal error", "6": "invalid message", "7": "number barred", "8": "partner account barred",
    "9": "partner quota violation", "10": "too many existing binds", "11": "account not enabled for HTTP",
    "12": "message too long", "14": "invalid signature", "15": "invalid sender address",
    "22": "invalid network code", "23": "invalid callback URL", "29": "non-whitelisted destination",
    "32": "signature and API secret disallowed", "33": "number de-activated",
}
"""Vonage's SMS API status codes (https://developer.vonage.com/en/messaging/sms/guides/troubleshooting-sms)."""
VONAGE_RETRY = frozenset({"1", "5"})
VONAGE_AUTH_REFUSALS = frozenset({"4", "14", "32"})


class Vonage(Provider):
    """Vonage's SMS API: ``POST /sms/json`` with ``api_key`` and ``api_secret`` in the form; always 200
    with one ``messages[]`` entry per part, each with its ``status`` (``"0"`` accepted)."""

    name = "vonage"

    def check(self) -> None:
        s = self.settings
        if not (s.sms_vonage_api_key and s.sms_vonage_api_secret):
            raise PermanentError("Vonage is not configured: set NOTIFIER_SMS_VONAGE_API_KEY and "
                                 "NOTIFIER_SMS_VONAGE_API_SECRET")
        if not s.sms_from:
            raise PermanentError("no SMS sender: set NOTIFIER_SMS_FROM (a Vonage number or sender id)")

    def request(self, sms: Sms) -> HttpRequest:
        s = self.settings
        form = {"api_key": s.sms_vonage_api_key, "api_secret": s.sms_vonage_api_secret,
                "from": s.sms_from.removeprefix("+"), "to": sms.to.removeprefix("+"), "text": sms.text,
                "client-ref": sms.reference[:100]}
        if sms.encoding == "UCS-2":
            form["type"] = "unicode"
        return HttpRequest(f"{s.sms_vonage_base_url}/sms/json", form)

    def answer(self, status: int, headers: Mapping[str, str], body: bytes) -> str:
        if status != 200:
            what = f"Vonage answered {status}: {body[:200]!r}"
            if status == 429 or status >= 500:
                raise RetryableError(what, retry_after=parse_retry_after(headers.get("Retry-After")))
            raise PermanentError(what)
        messages = _json(body).get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise PermanentError(f"Vonage answered 200 without messages: {body[:200]!r}")
        failed = next((m for m in messages if str(m.get("status")) != "0"), None)
        if failed is None:
            message_id = str(messages[0].get("message-id", ""))
            if not MESSAGE_ID.fullmatch(message_id):
                raise PermanentError(f"Vonage accepted the message without a message-id: {body[:200]!r}")
            return message_id
        code = str(failed.get("status"))
        what = (f"Vonage refused the message: status {code} ({VONAGE_STATUS.get(code, 'unknown')}): "
                f"{str(failed.get('error-text', ''))[:300]}")
        if code in VONAGE_RETRY:
            raise RetryableError(what)
        if code == "33":
            raise InvalidTarget(f"{what}; the number is no longer in service")
        if code == "7":
            raise OptedOut(f"{what}; the number is on Vonage's barred list (it replied STOP)")
        if code in VONAGE_AUTH_REFUSALS:
            raise PermanentError(f"{what}; check NOTIFIER_SMS_VONAGE_API_KEY and NOTIFIER_SMS_VONAGE_API_SECRET")
        if code == "15":
            raise PermanentError(f"{what}; check NOTIFIER_SMS_FROM")
        raise PermanentError(what)


PROVIDERS: dict[str, type[Provider]] = {"twilio": Twilio, "vonage": Vonage}


class SMS(Channel):
    name = "sms"
    needs_address = "phone"

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self.provider = PROVIDERS[self.settings.sms_provider](self.settings)
        self._session = PerProcess(lambda: https_session(self.settings.ca_file))
        """One per process: a forked worker child opens its own connections."""
        self._refused: dict[tuple[str, str, str], InvalidTarget] = {}
        """Why each target of the current batch was refused, for :meth:`prune` to act on."""
        self._lock = threading.Lock()

    def build_payload(self, delivery: Delivery) -> Sms:
        """The SMS for ``delivery``: the template's SMS text, else title and body on their own lines,
        cut on a grapheme to ``NOTIFIER_SMS_MAX_SEGMENTS`` parts (ending ``...``, or ``…`` in UCS-2)."""
        n = delivery.notification
        rendered = delivery.rendered.text if delivery.rendered is not None else ""
        text = rendered or "\n".join(part for part in (n.title, n.body) if part)
        text = fit_segments(text, self.settings.sms_max_segments)
        length = sms_length(text)
        return Sms(delivery.target, text, length.encoding, length.segments, n.id)

    def send(self, deliveries: Sequence[Delivery], on_outcome: OnOutcome | None = None) -> list[Outcome]:
        if not deliveries:
            return []
        try:
            self.provider.check()
            session = self._session.get()
        except DeliveryError as exc:
            return [Outcome(d, exc) for d in deliveries]
        statuses = SmsStatuses()
        outcomes = []
        for d in deliveries:
            try:
                message_id = self._post(session, self.build_payload(d))
            except InvalidTarget as exc:
                with self._lock:
                    self._refused[(d.user_id, d.notification.id, d.target)] = exc
                outcomes.append(reported(Outcome(d, exc), on_outcome))
            except DeliveryError as exc:
                outcomes.append(reported(Outcome(d, exc), on_outcome))
            else:
                outcomes.append(reported(Outcome(d, detail={"provider": self.provider.name,
                                                            "message_id": message_id},
                                                 provider_id=message_id or None), on_outcome))
                try:
                    statuses.accepted(self.provider.name, message_id, d.user_id, d.notification.id, d.target)
                except redis.RedisError as exc:  # the SMS is out and receipted: losing its trace is no failure
                    log.warning("cannot record SMS %s of notification %s: %s", message_id, d.notification.id, exc)
        return outcomes

    def _post(self, session: requests.Session, sms: Sms) -> str:
        request = self.provider.request(sms)
        try:
            response = session.post(request.url, data=request.form, auth=request.auth,
                                    timeout=self.settings.sms_timeout_seconds)
        except requests.exceptions.SSLError as exc:
            raise PermanentError(f"TLS with {self.provider.name} failed ({exc}): check its base URL and "
                                 "NOTIFIER_CA_FILE") from None
        except requests.RequestException as exc:
            raise RetryableError(f"{self.provider.name} unreachable: {exc}") from None
        return self.provider.answer(response.status_code, response.headers, response.content)

    def prune(self, delivery: Delivery) -> None:
        """A refused number leaves the user's preferences (if it is still theirs), with the reason; a
        recipient who opted out gets SMS turned off, with the reason."""
        with self._lock:
            error = self._refused.pop((delivery.user_id, delivery.notification.id, delivery.target), None)
        reason = str(error) if error is not None else "the SMS provider refused the number"
        store = PreferenceStore()
        if isinstance(error, OptedOut):
            store.update(delivery.user_id, channels={self.name: False}, channel_off_reasons={self.name: reason})
            log.info("turned SMS off for user %s: %s", delivery.user_id, reason)
            return

        def forget(current: Preferences) -> dict[str, Any] | None:
            if current.phone != delivery.target:
                return None
            return {"phone": None, "phone_invalid": f"{delivery.target}: {reason}"}

        if store.amend(delivery.user_id, forget) is not None:
            log.info("removed the phone number of user %s: %s", delivery.user_id, reason)

    def close(self) -> None:
        self._session.reset(lambda session: session.close())


def _json(body: bytes) -> dict[str, Any]:
    try:
        found = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return found if isinstance(found, dict) else {}
