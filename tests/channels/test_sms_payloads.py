"""The sms channel's pure parts: phone numbers to E.164, the text and its segment limit, each
provider's request and the meaning of its answers, and Twilio's request signature."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError as PydanticValidationError
from twilio.request_validator import RequestValidator

from notifier.channels.base import Delivery
from notifier.channels.sms import SMS, Sms, Twilio, Vonage, fit_segments
from notifier.config import Settings
from notifier.errors import InvalidTarget, OptedOut, PermanentError, RetryableError, ValidationError
from notifier.gateway.sms_status import twilio_signature
from notifier.models import Notification, Preferences, validate
from notifier.phones import e164
from notifier.templates.rendering import Rendered
from notifier.textlimits import sms_length
from tests.support.helpers import uid, use_env

TWILIO = {"sms_twilio_account_sid": "AC" + "1" * 32, "sms_twilio_auth_token": "secret", "sms_from": "+15017122661"}


def sms(text: str = "hi", to: str = "+4915112345678", encoding: str = "GSM-7") -> Sms:
    return Sms(to, text, encoding, 1, "n1")


def delivery(title: str = "Order shipped", body: str = "", rendered: Rendered | None = None) -> Delivery:
    return Delivery("u1", Notification(type="order_update", title=title, body=body), "+4915112345678", rendered)


# Phone numbers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("written, stored", [
    ("+49 151 12345678", "+4915112345678"),
    ("+49 (0151) 1234-5678", "+4915112345678"),
    ("+1 415-555-2671", "+14155552671"),
    ("+44 7911 123456", "+447911123456"),
])
def test_phone_numbers_are_stored_as_e164(written: str, stored: str) -> None:
    assert validate(Preferences, {"phone": written}).phone == stored
    assert e164(written) == stored


@pytest.mark.parametrize("written, problem", [
    ("0151 12345678", "write it as +COUNTRY NUMBER"),
    ("+1 555 0100", "not a valid phone number in"),
    ("+49 1", "is not a phone number"),
    ("call me", "write it as +COUNTRY NUMBER"),
    ("", "empty"),
])
def test_invalid_phone_numbers_are_refused_with_what_to_do(written: str, problem: str) -> None:
    with pytest.raises(ValidationError, match="phone") as info:
        validate(Preferences, {"phone": written})
    assert problem in str(info.value)


def test_a_default_region_reads_national_numbers() -> None:
    with use_env({"NOTIFIER_SMS_DEFAULT_REGION": "de"}):
        assert validate(Preferences, {"phone": "0151 12345678"}).phone == "+4915112345678"
        assert validate(Preferences, {"phone": "+1 415 555 2671"}).phone == "+14155552671"
    with pytest.raises(PydanticValidationError, match="not a region code"):
        Settings(sms_default_region="XX")


def test_the_cli_sets_the_phone_number_as_e164_and_refuses_a_bad_one() -> None:
    from click.testing import CliRunner

    from notifier.cli import main
    from notifier.state.preferences import PreferenceStore

    user = uid()
    result = CliRunner().invoke(main, ["prefs", "set", user, "--phone", "+49 151 1234 5678", "--json"])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["phone"] == "+4915112345678"
    bad = CliRunner().invoke(main, ["prefs", "set", user, "--phone", "0151 12345678"])
    assert bad.exit_code != 0 and "+COUNTRY NUMBER" in bad.output
    assert PreferenceStore().get(user).phone == "+4915112345678"
    assert CliRunner().invoke(main, ["prefs", "set", user, "--phone", ""]).exit_code == 0
    assert PreferenceStore().get(user).phone is None


def test_notes_about_a_refused_number_or_an_opt_out_go_once_the_user_changes_them() -> None:
    refused = validate(Preferences, {"phone_invalid": "+4915112345678: not a mobile",
                                     "channels": {"sms": False}, "channel_off_reasons": {"sms": "replied STOP"}})
    assert refused.to_dict()["phone_invalid"] and refused.to_dict()["channel_off_reasons"] == {"sms": "replied STOP"}
    again = validate(Preferences, {**refused.to_dict(), "phone": "+4915112345679", "channels": {"sms": True}})
    assert again.phone_invalid is None and again.channel_off_reasons == {}
    assert "phone_invalid" not in again.to_dict() and "channel_off_reasons" not in again.to_dict()


# The text ---------------------------------------------------------------------------------------
def test_the_text_is_title_and_body_or_the_templates_sms_text() -> None:
    channel = SMS(Settings(**TWILIO))
    plain = channel.build_payload(delivery("Shipped", "On its way"))
    assert (plain.to, plain.text, plain.encoding, plain.segments) == ("+4915112345678", "Shipped\nOn its way",
                                                                      "GSM-7", 1)
    templated = channel.build_payload(delivery("Title", rendered=Rendered("Title", "x", text="Bob commented: hi")))
    assert templated.text == "Bob commented: hi"
    assert channel.build_payload(delivery("Grüße 👋")).encoding == "UCS-2"


@pytest.mark.parametrize("text, limit, encoding, ending", [
    ("a" * 1000, 3, "GSM-7", "..."),
    ("a" * 1000, 1, "GSM-7", "..."),
    ("ü" * 400 + "€" * 400, 2, "GSM-7", "..."),
    ("Привет " * 100, 3, "UCS-2", "…"),
    ("👍🏽" * 200, 2, "UCS-2", "…"),
])
def test_a_long_text_is_cut_on_a_grapheme_to_the_segment_limit(text: str, limit: int, encoding: str,
                                                              ending: str) -> None:
    cut = fit_segments(text, limit)
    length = sms_length(cut)
    assert length.segments == limit and length.encoding == encoding, "as many parts as allowed, same encoding"
    assert cut.endswith(ending) and text.startswith(cut.removesuffix(ending))
    assert length.units > length.per_segment * limit - 6, "the parts are used up, not left half empty"
    if "👍🏽" in text:
        assert cut.removesuffix(ending).endswith("👍🏽"), "a skin-toned thumb is not split"


def test_the_segment_limit_comes_from_the_settings() -> None:
    long = delivery("T", "word " * 200)
    assert SMS(Settings(**TWILIO)).build_payload(long).segments == 3
    assert SMS(Settings(**TWILIO, sms_max_segments=1)).build_payload(long).segments == 1
    assert SMS(Settings(**TWILIO)).build_payload(delivery("short")).text == "short"


# Twilio -----------------------------------------------------------------------------------------
def test_twilios_request_is_a_form_post_with_basic_auth() -> None:
    request = Twilio(Settings(**TWILIO, sms_twilio_base_url="http://127.0.0.1:1")).request(sms("hi"))
    assert request.url == f"http://127.0.0.1:1/2010-04-01/Accounts/{TWILIO['sms_twilio_account_sid']}/Messages.json"
    assert request.auth == (TWILIO["sms_twilio_account_sid"], "secret")
    assert request.form == {"To": "+4915112345678", "Body": "hi", "From": "+15017122661"}
    service = Twilio(Settings(**TWILIO, sms_twilio_messaging_service_sid="MG" + "2" * 32,
                              public_url="https://notify.example.com")).request(sms())
    assert service.form["MessagingServiceSid"] == "MG" + "2" * 32 and "From" not in service.form
    assert service.form["StatusCallback"] == "https://notify.example.com/v1/sms/twilio/status"


def twilio_error(status: int, code: int, retry_after: str | None = None) -> Exception:
    body = orjson.dumps({"code": code, "message": "m", "more_info": f"https://www.twilio.com/docs/errors/{code}",
                         "status": status})
    try:
        Twilio(Settings(**TWILIO)).answer(status, {"Retry-After": retry_after} if retry_after else {}, body)
    except Exception as exc:  # noqa: BLE001  (the test looks at which error it is)
        return exc
    raise AssertionError("no error")


def test_twilios_answers_map_onto_the_error_tree() -> None:
    assert Twilio(Settings(**TWILIO)).answer(201, {}, b'{"sid": "SM123", "status": "queued"}') == "SM123"
    limited = twilio_error(429, 20429, "7")
    assert isinstance(limited, RetryableError) and limited.retry_after == 7
    assert isinstance(twilio_error(400, 20429), RetryableError), "Twilio's too-many-requests code alone"
    assert isinstance(twilio_error(503, 20500), RetryableError)
    for code in (21211, 21614):
        refused = twilio_error(400, code)
        assert type(refused) is InvalidTarget and str(code) in str(refused)
    assert isinstance(twilio_error(400, 21610), OptedOut)
    auth = twilio_error(401, 20003)
    assert type(auth) is PermanentError and "NOTIFIER_SMS_TWILIO_AUTH_TOKEN" in str(auth)
    assert type(twilio_error(400, 21408)) is PermanentError
    with pytest.raises(PermanentError, match="without a message sid"):
        Twilio(Settings(**TWILIO)).answer(201, {}, b"<html>")


# Vonage -----------------------------------------------------------------------------------------
VONAGE = {"sms_provider": "vonage", "sms_vonage_api_key": "key", "sms_vonage_api_secret": "shh", "sms_from": "Acme"}


def test_vonages_request_carries_the_key_and_unicode_when_needed() -> None:
    vonage = Vonage(Settings(**VONAGE, sms_vonage_base_url="http://127.0.0.1:1"))
    request = vonage.request(sms("hi"))
    assert request.url == "http://127.0.0.1:1/sms/json" and request.auth is None
    assert request.form == {"api_key": "key", "api_secret": "shh", "from": "Acme", "to": "4915112345678",
                            "text": "hi", "client-ref": "n1"}
    assert vonage.request(sms("Привет", encoding="UCS-2")).form["type"] == "unicode"


def vonage_answer(*statuses: str, http: int = 200) -> Exception | str:
    body = orjson.dumps({"message-count": str(len(statuses)), "messages": [
        {"status": s, "message-id": f"ID{i}", "error-text": "text"} for i, s in enumerate(statuses)]})
    try:
        return Vonage(Settings(**VONAGE)).answer(http, {}, body)
    except Exception as exc:  # noqa: BLE001  (the test looks at which error it is)
        return exc


def test_vonages_answers_map_onto_the_error_tree() -> None:
    assert vonage_answer("0") == "ID0" and vonage_answer("0", "0") == "ID0"
    assert isinstance(vonage_answer("1"), RetryableError) and isinstance(vonage_answer("5"), RetryableError)
    assert isinstance(vonage_answer("0", "1"), RetryableError), "a refused part fails the message"
    assert type(vonage_answer("33")) is InvalidTarget and isinstance(vonage_answer("7"), OptedOut)
    credentials = vonage_answer("4")
    assert type(credentials) is PermanentError and "NOTIFIER_SMS_VONAGE_API_SECRET" in str(credentials)
    for status in ("2", "3", "6", "9", "15", "29"):
        assert type(vonage_answer(status)) is PermanentError, status
    assert isinstance(vonage_answer("0", http=503), RetryableError)
    assert isinstance(vonage_answer("0", http=429), RetryableError)
    assert type(vonage_answer("0", http=401)) is PermanentError


# Twilio's signature ------------------------------------------------------------------------------
def test_the_signature_is_twilios() -> None:
    """The documented example (https://www.twilio.com/docs/usage/security), and Twilio's own library."""
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234", "From": "+12349013030",
              "To": "+18005551212"}
    assert twilio_signature("12345", url, params.items()) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    params["Body"] = "Grüße & more=yes"
    assert twilio_signature("t0ken", url, params.items()) == RequestValidator("t0ken").compute_signature(url, params)
